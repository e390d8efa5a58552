"""Results lines from the events a row's pointers name, decoded column by column (pure: no IO).

    lines = results_lines(verdicts, payloads, downloads)   # one line per image, one per failed row

``verdicts``: ``id, fingerprint, state, attempts, verdict, submit`` (the verdict and submitted events as
the JSON lines the store keeps: first success, else the failure for good, and the request it answered);
``downloads``: ``task_uuid, result_index, line`` (the downloaded events). Everything but the passthrough
columns (free-form per row) is decoded by polars: a page of 20,000 rows takes a fraction of a second.
"""

from __future__ import annotations

import json
from typing import Any, Final

import polars as pl

from pipeline.request_columns import request_schema
from pipeline.rows import SHOWN
from pipeline.state.rule import SUCCEEDED

__all__ = ["LINE_COLUMNS", "RESERVED", "RESULTS_COLUMNS", "results_lines", "verdict_frame"]

_UTC = pl.Datetime("us", "UTC")
_REQUEST: Final = request_schema(SHOWN)  # decoded from the submitted event's request
RESULTS_COLUMNS: dict[str, Any] = {
    "id": pl.String,
    "fingerprint": pl.String,
    "result_index": pl.Int64,
    "status": pl.String,
    "task_uuid": pl.String,
    "image_uuid": pl.String,
    "image_url": pl.String,
    "cost_usd": pl.Float64,
    "cost_source": pl.String,
    "estimate_usd": pl.Float64,
    **_REQUEST,
    "resolution": pl.String,
    "options": pl.String,  # JSON object of the options besides quality and background; null when none
    "local_path": pl.String,
    "sha256": pl.String,
    "bytes": pl.Int64,
    "attempts": pl.Int64,
    "error_code": pl.String,
    "error_message": pl.String,
    "submitted_at": _UTC,
    "completed_at": _UTC,
    "latency_s": pl.Float64,
    "run_id": pl.String,
    "job": pl.String,
}
RESERVED: Final = frozenset(RESULTS_COLUMNS)
LINE_COLUMNS: Final = [name for name in RESULTS_COLUMNS if name != "job"]  # the job is the writer's

_VERDICT_INPUT: Final = {
    "id": pl.String,
    "fingerprint": pl.String,
    "state": pl.String,
    "attempts": pl.Int64,
    "verdict": pl.String,
    "submit": pl.String,
}
_IMAGE = pl.Struct(
    {"index": pl.Int64, "image_uuid": pl.String, "image_url": pl.String, "cost_usd": pl.Float64}
)
_VERDICT = pl.Struct(
    {
        "task_uuid": pl.String,
        "run_id": pl.String,
        "at": pl.String,
        "cost_usd": pl.Float64,
        "code": pl.String,
        "message": pl.String,
        "images": pl.List(_IMAGE),
    }
)
_SUBMIT = pl.Struct({"at": pl.String, "estimate_usd": pl.Float64, "request": pl.Struct(_REQUEST)})
_DECODE_SLICE: Final = 4096  # JSON texts decoded at once
_DOWNLOAD = pl.Struct({"path": pl.String, "sha256": pl.String, "bytes": pl.Int64})


def verdict_frame(rows: list[tuple[str, str, str, int, str | None, str | None]]) -> pl.DataFrame:
    """The ``verdicts`` input of ``results_lines`` from plain tuples."""
    return pl.DataFrame(rows, schema=_VERDICT_INPUT, orient="row")


def results_lines(verdicts: pl.DataFrame, downloads: pl.DataFrame) -> pl.DataFrame:
    """The results lines of ``verdicts`` (documented columns but ``job``, then passthrough)."""
    base = verdicts.select(
        "id",
        "fingerprint",
        "state",
        "attempts",
        _decoded(verdicts["verdict"], _VERDICT).alias("v"),
        _decoded(verdicts["submit"], _SUBMIT).alias("s"),
        pl.col("submit").str.json_path_match("$.request.options").alias("_options"),
        pl.col("submit").str.json_path_match("$.passthrough").alias("_passthrough"),
    ).with_row_index("_row")
    parts = [_success_lines(base.filter(pl.col("state") == SUCCEEDED), downloads), _failure_lines(base)]
    order = ["_row", "_options", *(c for c in LINE_COLUMNS if c not in ("resolution", "options"))]
    lines = pl.concat([part.select(order) for part in parts], how="vertical_relaxed")
    lines = lines.sort("_row", "result_index", nulls_last=True)
    resolution, options = _options(lines["_options"])
    lines = lines.with_columns(resolution=resolution, options=options).select("_row", *LINE_COLUMNS)
    extras = _passthrough_frame(base["_passthrough"].gather(lines["_row"]).to_list())
    lines = lines.drop("_row")
    return lines.hstack(extras) if extras.width else lines


def _decoded(texts: pl.Series, dtype: pl.DataType) -> pl.Series:
    """``texts.str.json_decode(dtype)``, a slice at a time: polars holds a parsed copy of all the text it
    decodes at once, several times its size."""
    slices = [texts.slice(start, _DECODE_SLICE) for start in range(0, len(texts), _DECODE_SLICE)]
    if len(slices) < 2:
        return texts.str.json_decode(dtype)
    return pl.concat([part.str.json_decode(dtype) for part in slices])


def _common(v: pl.Expr, s: pl.Expr) -> dict[str, pl.Expr]:
    request = s.struct.field("request")
    submitted = s.struct.field("at").str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    completed = v.struct.field("at").str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    return {
        **{name: request.struct.field(name) for name in _REQUEST},
        "submitted_at": submitted,
        "completed_at": completed,
        "latency_s": ((completed - submitted).dt.total_microseconds() / 1e6).cast(pl.Float64),
        "run_id": v.struct.field("run_id"),
        "task_uuid": v.struct.field("task_uuid"),
    }


def _success_lines(base: pl.DataFrame, downloads: pl.DataFrame) -> pl.DataFrame:
    v, s = pl.col("v"), pl.col("s")
    images = v.struct.field("images")
    n = images.list.len().clip(lower_bound=1).cast(pl.Float64)
    per_row = base.with_columns(
        _n=n, _estimate=s.struct.field("estimate_usd") / n, _share=v.struct.field("cost_usd") / n
    ).with_columns(_image=images)
    exploded = per_row.explode("_image").filter(pl.col("_image").is_not_null())
    image = pl.col("_image")
    cost = pl.coalesce(image.struct.field("cost_usd"), pl.col("_share"))
    source = (
        pl.when(cost.is_not_null())
        .then(pl.lit("provider"))
        .when(pl.col("_estimate").is_not_null())
        .then(pl.lit("estimate"))
    )
    lines = exploded.select(
        "_row",
        "id",
        "fingerprint",
        "attempts",
        "_options",
        result_index=image.struct.field("index"),
        status=pl.lit(SUCCEEDED),
        image_uuid=image.struct.field("image_uuid"),
        image_url=image.struct.field("image_url"),
        cost_usd=pl.coalesce(cost, pl.col("_estimate")),
        cost_source=source,
        estimate_usd=pl.col("_estimate"),
        error_code=pl.lit(None, dtype=pl.String),
        error_message=pl.lit(None, dtype=pl.String),
        **_common(v, s),
    )
    files = downloads.select(
        "task_uuid", "result_index", pl.col("line").str.json_decode(_DOWNLOAD).struct.unnest()
    ).rename({"path": "local_path"})
    return lines.join(files, on=["task_uuid", "result_index"], how="left")


def _failure_lines(base: pl.DataFrame) -> pl.DataFrame:
    v, s = pl.col("v"), pl.col("s")
    empty = ("result_index", "image_uuid", "image_url", "cost_usd", "cost_source", "local_path", "sha256")
    none = {name: pl.lit(None, dtype=RESULTS_COLUMNS[name]) for name in (*empty, "bytes")}
    return base.filter(pl.col("state") != SUCCEEDED).select(
        "_row",
        "id",
        "fingerprint",
        "attempts",
        "_options",
        status=pl.lit("failed"),
        estimate_usd=s.struct.field("estimate_usd"),
        error_code=v.struct.field("code"),
        error_message=v.struct.field("message"),
        **none,
        **_common(v, s),
    )


def _options(texts: pl.Series) -> tuple[pl.Series, pl.Series]:
    """``(resolution, options as canonical JSON)`` of each request's options (0.1's have none)."""
    decoded: dict[str, tuple[str | None, str | None]] = {}
    for text in texts.drop_nulls().unique().to_list():
        options = json.loads(text)
        if isinstance(options, dict) and options:
            resolution = options.get("resolution")
            canonical = json.dumps(options, sort_keys=True, separators=(",", ":"))
            decoded[text] = (resolution if isinstance(resolution, str) else None, canonical)
    pairs = [decoded.get(t, (None, None)) if t is not None else (None, None) for t in texts.to_list()]
    return (
        pl.Series("resolution", [p[0] for p in pairs], dtype=pl.String),
        pl.Series("options", [p[1] for p in pairs], dtype=pl.String),
    )


def _passthrough_frame(texts: list[str | None]) -> pl.DataFrame:
    """Passthrough columns: values as given when a column's values share a type, else that column as
    text; a name the table already uses gets ``_passthrough`` appended."""
    if not any(t and t != "{}" for t in texts):
        return pl.DataFrame()
    try:  # decoded by polars when the columns have one type each (the common case: 10x faster)
        decoded = pl.Series(texts, dtype=pl.String).str.json_decode(infer_schema_length=None)
    except pl.exceptions.PolarsError:
        decoded = None
    if decoded is not None and isinstance(decoded.dtype, pl.Struct) and decoded.dtype.fields:
        frame = decoded.struct.unnest()
        return frame.rename({n: f"{n}_passthrough" for n in frame.columns if n in RESERVED})
    extras = [_renamed(json.loads(t)) if t else {} for t in texts]
    names = list(dict.fromkeys(name for extra in extras for name in extra))
    if not names:
        return pl.DataFrame()
    try:
        return pl.from_dicts(extras, schema=names, infer_schema_length=None)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return pl.DataFrame([_passthrough_series(name, [e.get(name) for e in extras]) for name in names])


def _renamed(extra: Any) -> dict[str, Any]:
    if not isinstance(extra, dict):
        return {}
    if RESERVED.isdisjoint(extra):
        return extra
    return {f"{k}_passthrough" if k in RESERVED else k: v for k, v in extra.items()}


def _passthrough_series(name: str, values: list[Any]) -> pl.Series:
    try:
        return pl.Series(name, values)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        as_text = [v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in values]
        return pl.Series(name, as_text, dtype=pl.String)
