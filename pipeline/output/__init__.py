"""What a job shows: the plan before a run (``plan``), the results table after it (``results``), cost
reports (``report``) and the job's status (``status``), all read from the job's state and manifest.
"""
