"""Cost reports: the facts a report covers (``facts``, ``ledger``), grouped and summed (``build``, ``keys``)
and shown as text, CSV, JSON, Markdown (``format``) or one HTML page (``html``).
"""
