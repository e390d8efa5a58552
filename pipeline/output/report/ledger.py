"""Charges in a job's state that its results table does not show: duplicate payments, missing rows.

    charges = state_charges(store, table_keys, shown)   # pl.DataFrame, one row per charge

Read from the store, never by replaying its events: a ``succeeded`` event of a row that had already
succeeded is a duplicate payment the store indexes (``waste``, unless the table lists its task); the first
success of a row the table lacks (a table older than its state) is ``unlisted``. Which rows may be missing
is known from the seq the table was written at (only rows with later events), else (a table from 0.1 or
a CSV) from comparing the store's succeeded rows with the table's. Costs follow the store's cost rule
(``pipeline.state.rule.event_cost``), as integer nano-dollars: exact for any price with up to nine decimals.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Final

import polars as pl

from pipeline.output.results.write import touched_rows
from pipeline.request_columns import request_schema
from pipeline.rows import SHOWN
from pipeline.state import Store
from pipeline.state.events import SucceededEvent, event_from_dict
from pipeline.state.rule import SUCCEEDED, event_cost
from pipeline.state.store import Verdict

__all__ = ["NANO", "nano", "state_charges", "usd"]

NANO = 1_000_000_000
_KEYS = {"id": pl.String, "fingerprint": pl.String}
_CHARGES: Final = {
    **{name: pl.String() for name in (*_KEYS, "task_uuid", "run_id", "at")},
    "cost_nano": pl.Int64(),
    "kind": pl.String(),
    **{f"{name}_state": dtype for name, dtype in request_schema(SHOWN).items()},
}


def usd(nanos: int | None) -> Decimal:
    """Exact USD from integer nano-dollars."""
    return Decimal(nanos or 0).scaleb(-9)


def nano(expr: pl.Expr) -> pl.Expr:
    """USD floats as billed -> exact integer nano-dollars (the float is the nearest double to the price)."""
    return (expr.cast(pl.Float64) * NANO).round(0).cast(pl.Int64)


def _nanos(cost: Decimal) -> int:
    return int((cost * NANO).to_integral_value())


def state_charges(store: Store, table: pl.LazyFrame, shown: int | None) -> pl.DataFrame:
    """Charges no results row accounts for. ``table``: ``id, fingerprint, status, task_uuid`` of the
    results lines (lazy: only the few lines that matter are read); ``shown``: the seq the table was
    written at (None: unknown). Returns ``id, fingerprint, task_uuid, run_id, completed_at, cost_nano,
    kind`` (``waste`` or ``unlisted``) and, for unlisted rows, the request's ``<column>_state``."""
    with store.snapshot():
        duplicates = store.duplicate_payments()
        missing = _missing(store, table, shown)
        lines = store.payloads([v.verdict_seq for v in missing] + [v.submit_seq or 0 for v in missing])
    unlisted = []
    for verdict in missing:
        event = event_from_dict(json.loads(lines[verdict.verdict_seq]))
        if isinstance(event, SucceededEvent):
            unlisted.append((event, lines.get(verdict.submit_seq or 0)))
    listed = _listed(table, [e.task_uuid for e in duplicates] + [e.task_uuid for e, _ in unlisted])
    rows = [_charge(e, "waste") for e in duplicates if e.task_uuid not in listed]
    rows += [_charge(e, "unlisted", submit) for e, submit in unlisted if e.task_uuid not in listed]
    frame = pl.DataFrame(rows, schema=_CHARGES, orient="row")
    at = pl.col("at").str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    return frame.with_columns(completed_at=at).drop("at")


def _listed(table: pl.LazyFrame, tasks: list[str]) -> set[str]:
    """Which of ``tasks`` the table has a line of."""
    if not tasks:
        return set()
    found = table.select("task_uuid").filter(pl.col("task_uuid").is_in(tasks))
    return set(found.collect(engine="streaming")["task_uuid"].to_list())


def _charge(event: SucceededEvent, kind: str, submit: str | None = None) -> tuple[Any, ...]:
    request = json.loads(submit).get("request") or {} if submit else {}
    values = [request.get(name) for name in SHOWN]
    return (
        event.id,
        event.fingerprint,
        event.task_uuid,
        event.run_id,
        event.at,
        _nanos(event_cost(event)),
        kind,
        *values,
    )


def _missing(store: Store, table: pl.LazyFrame, shown: int | None) -> list[Verdict]:
    """Succeeded rows the table has no line of: among those changed since ``shown`` when the table says
    what it shows (none when it shows the latest state), else among all."""
    if shown is not None:
        if shown == store.last_seq():
            return []
        pages = store.verdicts(touched_rows(store, shown))
    else:
        pages = store.verdicts()
    rows = [v for page in pages for v in page if v.state == SUCCEEDED]
    if not rows:
        return []
    keys = pl.DataFrame([(v.id, v.fingerprint) for v in rows], schema=_KEYS, orient="row")
    kept = table.filter(pl.col("status") == SUCCEEDED).select("id", "fingerprint")
    present = kept.join(keys.lazy(), on=["id", "fingerprint"], how="semi").unique()
    shown_rows = set(present.collect(engine="streaming").iter_rows())
    return [v for v in rows if (v.id, v.fingerprint) not in shown_rows]
