"""Charges in a job's ledger that its results table does not show: duplicates, failures, missing rows.

    extra = ledger_charges(Path("output/demo/ledger.jsonl"), results)   # pl.DataFrame, one row per charge

Every ``succeeded`` (or charged ``failed``) event whose task UUID has no row in the results table is a
charge the table does not account for. A second success for an (id, fingerprint) the table already keeps
is ``waste``; the first success of a pair the table lacks altogether (a table older than its ledger) is
``unlisted``. Money is integer nano-dollars, exact for any price with up to nine decimals.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import UsageError

__all__ = ["NANO", "LedgerReadError", "ledger_charges", "nano", "submitted_requests", "usd"]

NANO = 1_000_000_000

_SCHEMA: dict[str, pl.DataType] = {
    "event": pl.String(),
    "id": pl.String(),
    "fingerprint": pl.String(),
    "task_uuid": pl.String(),
    "run_id": pl.String(),
    "at": pl.String(),
    "cost_usd": pl.Float64(),
    "images": pl.List(pl.Struct({"cost_usd": pl.Float64()})),
}
_REQUEST_SCHEMA: dict[str, pl.DataType] = {
    "event": pl.String(),
    "task_uuid": pl.String(),
    "request": pl.Struct(
        {
            "model": pl.String(),
            "prompt": pl.String(),
            "width": pl.Int64(),
            "height": pl.Int64(),
            "quality": pl.String(),
            "background": pl.String(),
            "output_format": pl.String(),
        }
    ),
}


class LedgerReadError(UsageError):
    """A ledger line (not the last) is not valid JSON."""


def usd(nanos: int | None) -> Decimal:
    """Exact USD from integer nano-dollars."""
    return Decimal(nanos or 0).scaleb(-9)


def nano(expr: pl.Expr) -> pl.Expr:
    """USD floats as billed -> exact integer nano-dollars (the float is the nearest double to the price)."""
    return (expr.cast(pl.Float64) * NANO).round(0).cast(pl.Int64)


def _complete_bytes(path: Path) -> bytes | None:
    """None when the file ends with a newline (read it as is), else its complete lines only."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return b""
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        f.seek(0)
        data = f.read()
    return data[: data.rfind(b"\n") + 1]


def _by_lines(path: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Slow, exact reader: names the bad line; an invalid LAST line is a torn write and is ignored."""
    lines = path.read_bytes().split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError as exc:
            if number == len(lines):
                break
            raise LedgerReadError(f"{path}: line {number}: not valid JSON ({exc})") from exc
        if isinstance(record, dict):
            records.append({key: record.get(key) for key in schema} | {"seq": number})
    try:
        return pl.DataFrame(records, schema={**schema, "seq": pl.Int64()}, strict=False)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise LedgerReadError(f"{path}: unexpected field types ({exc})") from exc


_CSV_LINES: dict[str, Any] = {
    "has_header": False,
    "separator": "\x01",  # never raw in JSON text: each line is one field
    "quote_char": None,
    "schema": {"line": pl.String()},
}


def _task_filter(exclude: pl.Series | None, include: pl.Series | None) -> pl.Expr:
    """Lines whose task UUID is not in ``exclude`` / is in ``include`` (found by pattern, not parsed)."""
    task = pl.col("line").str.extract(r'"task_uuid"\s*:\s*"([^"\\]*)"', 1)
    keep = pl.lit(True)
    if exclude is not None:
        keep = keep & ~task.is_in(exclude.implode()).fill_null(False)
    if include is not None:
        keep = keep & task.is_in(include.implode()).fill_null(False)
    return keep


def _lines(path: Path, events: tuple[str, ...], keep: pl.Expr) -> pl.DataFrame | None:
    """``seq`` (line number) and ``line`` (text) of the events of a kind in ``events`` that ``keep``
    selects, in one streaming pass: polars reads a file of one text column far faster than JSON, and
    holds only the lines kept. None when a line other than the last is not a JSON object (the slow reader
    then names it).
    """
    data = _complete_bytes(path)
    if data == b"":
        return pl.DataFrame(schema={"seq": pl.Int64(), "line": pl.String()})
    text = pl.col("line")  # null for an empty line
    bad = text.is_not_null() & ~(text.str.starts_with("{") & text.str.ends_with("}"))
    wanted = text.str.contains(rf'"event"\s*:\s*"({"|".join(events)})"') & keep
    try:
        if data is None:
            scan = pl.scan_csv(path, **_CSV_LINES, row_index_name="seq", row_index_offset=1)
        else:
            scan = pl.read_csv(data, **_CSV_LINES).with_row_index("seq", offset=1).lazy()
        picked = scan.filter(wanted.fill_null(False) | bad)
        lines = picked.with_columns(pl.col("seq").cast(pl.Int64()), bad=bad).collect(engine="streaming")
        flagged = lines.filter("bad")["seq"]
        if flagged.len() and (flagged.len() > 1 or flagged[0] != scan.select(pl.len()).collect().item()):
            return None
    except pl.exceptions.PolarsError:
        return None
    return lines.filter(~pl.col("bad")).select("seq", "line")


def _read(
    path: Path,
    schema: dict[str, pl.DataType],
    events: tuple[str, ...],
    *,
    exclude: pl.Series | None = None,
    include: pl.Series | None = None,
) -> pl.DataFrame:
    """``seq`` and the fields in ``schema`` of the events of a kind in ``events``, leaving out the task
    UUIDs in ``exclude`` / keeping only those in ``include`` before any JSON is decoded."""
    lines = _lines(path, events, _task_filter(exclude, include))
    frame = None
    if lines is not None:
        try:
            decoded = pl.col("line").str.json_decode(pl.Struct(schema)).struct.unnest()
            frame = lines.select("seq", decoded)
        except pl.exceptions.PolarsError:
            frame = None
    if frame is None:
        frame = _by_lines(path, schema)
        frame = frame.filter(pl.col("task_uuid").is_in(include.implode())) if include is not None else frame
        frame = frame.filter(~pl.col("task_uuid").is_in(exclude.implode())) if exclude is not None else frame
    return frame.filter(pl.col("event").is_in(events))


def _event_cost() -> pl.Expr:
    """Sum of the images' costs; the event's total when no image carries one (as the ledger fold does)."""
    per_image = pl.col("images").list.eval(nano(pl.element().struct.field("cost_usd")))
    has_any = per_image.list.eval(pl.element().is_not_null()).list.any().fill_null(False)
    return pl.when(has_any).then(per_image.list.sum()).otherwise(nano(pl.col("cost_usd")))


def ledger_charges(path: Path, results: pl.DataFrame) -> pl.DataFrame:
    """Charges in the ledger that no results row (matched by task UUID) accounts for.

    ``results`` needs ``id, fingerprint, status, task_uuid``. Returns ``id, fingerprint, task_uuid, run_id,
    completed_at, cost_nano, kind`` with kind ``waste`` or ``unlisted``.
    """
    listed = results["task_uuid"].drop_nulls().unique()
    charges = _read(path, _SCHEMA, ("succeeded", "failed"), exclude=listed).with_columns(
        cost_nano=_event_cost()
    )
    charges = charges.filter((pl.col("event") == "succeeded") | (pl.col("cost_nano").fill_null(0) > 0))
    kept = results.filter(pl.col("status") == "succeeded").select("id", "fingerprint").unique()
    kept = kept.with_columns(kept=pl.lit(True))
    first_success = (pl.col("event") == "succeeded") & (
        pl.col("seq") == pl.col("seq").filter(pl.col("event") == "succeeded").min().over("id", "fingerprint")
    )
    return (
        charges.join(kept, on=["id", "fingerprint"], how="left")
        .with_columns(
            kind=pl.when(pl.col("kept").is_null() & first_success)
            .then(pl.lit("unlisted"))
            .otherwise(pl.lit("waste")),
            completed_at=pl.col("at").str.to_datetime(time_zone="UTC", time_unit="us", strict=False),
            cost_nano=pl.col("cost_nano").fill_null(0),
        )
        .select("id", "fingerprint", "task_uuid", "run_id", "completed_at", "cost_nano", "kind")
    )


def submitted_requests(path: Path, task_uuids: pl.Series) -> pl.DataFrame:
    """``task_uuid`` and the request fields of the ``submitted`` events of ``task_uuids``."""
    wanted = _read(path, _REQUEST_SCHEMA, ("submitted",), include=task_uuids)
    return wanted.unique("task_uuid", keep="last").select("task_uuid", pl.col("request").struct.unnest())
