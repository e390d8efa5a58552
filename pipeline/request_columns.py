"""The request's fields as table columns: each ``ImageRequest`` field's polars dtype, in one table.

    pl.DataFrame(schema=request_schema(SETTINGS))   # model: String, width: Int64, ... number_results: Int64
    request_schema(SHOWN)                           # the request columns of the results table

Apart from ``pipeline.rows`` so that ``import pipeline`` does not load polars. ``options`` has no column
of its own: each option is a text column of its name (a manifest, a plan's rows) or one JSON text (results).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import polars as pl

from pipeline.rows import FIELDS

__all__ = ["REQUEST_DTYPES", "request_schema"]

_DTYPES: Final[Mapping[str, pl.DataType]] = {
    "model": pl.String(),
    "prompt": pl.String(),
    "width": pl.Int64(),
    "height": pl.Int64(),
    "quality": pl.String(),
    "background": pl.String(),
    "output_format": pl.String(),
    "number_results": pl.Int64(),
    "reference_images": pl.List(pl.String()),
}
# In the order of ``FIELDS``; a field added there without a dtype here fails at import.
REQUEST_DTYPES: Final = {name: _DTYPES[name] for name in FIELDS if name != "options"}


def request_schema(names: Iterable[str]) -> dict[str, pl.DataType]:
    """``{name: dtype}`` of the request fields ``names``, in their order."""
    return {name: REQUEST_DTYPES[name] for name in names}
