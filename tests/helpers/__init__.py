"""Builders shared by the tests (importable because pyproject sets pytest's ``pythonpath = ["tests"]``).

- ``paths``: the repository root and ``tests/data``.
- ``job_state``: the events a job's state holds, read as an audit would.
- ``fake_runware``: a scripted Runware on ``httpx.MockTransport``.
- ``engine_runs``: rows, specs and one engine run against the scripted Runware.
- ``sandbox_jobs``: a job pointed at a sandbox, run as ``pipeline run`` in a subprocess, and its bill.
- ``sandbox_tasks``: the imageInference tasks the sandbox tests send.
- ``manifest_jobs``: a job spec, its manifest, real images and a 0.1 ledger written to a folder.
- ``report_data``: results tables, ledgers and rejects in the documented schemas.
"""
