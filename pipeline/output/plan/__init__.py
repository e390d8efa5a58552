"""``pipeline plan``: classify the manifest against the state (``build``), price it (``costs``), explain the
changed rows (``history``, ``reader``) and show it (``format``).
"""
