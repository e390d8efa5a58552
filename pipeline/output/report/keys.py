"""What a cost report can be grouped by besides its tables' columns, and the formats it prints: the
command line needs them before anything heavy is imported (``pipeline report --help``)::

    DERIVED_KEYS   # ("day", "week", "month", "run", "model", "quality", "size")
"""

from __future__ import annotations

__all__ = ["DERIVED_KEYS", "FORMATS"]

DERIVED_KEYS = ("day", "week", "month", "run", "model", "quality", "size")
FORMATS = ("table", "csv", "json", "markdown")
