"""The manifest layer: files read in batches (``files``, ``reader``), columns mapped (``columns``), row
rules as polars expressions (``rules``, ``options``, ``refs``, ``references``), and each row's fingerprint
(``fingerprint``). Pure of the network and of the job's state.
"""
