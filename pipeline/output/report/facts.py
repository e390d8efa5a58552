"""Which files and which rows a cost report covers: results tables, their job's state and rejects, as facts.

    sources = resolve_sources(["jobs/demo.toml", "output/*/results.parquet"])
    facts = load_facts(sources, by=["day", "category"], since=parse_when("2026-11-01"))
    facts.frame   # lazy: one row per image, failed row, charge only the state knows, reject ("kind")

Money columns are integer nano-dollars (``cost_nano``, ``estimate_nano``); ``pipeline.output.report.build``
sums them.
"""

from __future__ import annotations

import datetime as dt
import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.errors import UsageError
from pipeline.output.report.keys import DERIVED_KEYS
from pipeline.output.report.ledger import nano, state_charges, usd
from pipeline.output.results.write import RESULTS_COLUMNS, shown_seq
from pipeline.output.status import read_state
from pipeline.rows import SHOWN
from pipeline.state import LEDGER_NAME, STATE_NAME

__all__ = ["DERIVED_KEYS", "DETAIL", "Facts", "Source", "load_facts", "parse_when", "resolve_sources"]

RESULTS_NAME = "results.parquet"
REJECTS_NAME = "rejects.parquet"
_REQUIRED = ("id", "status", "cost_usd")

# The results columns a report reads (by name: their dtypes are the results table's).
_BASE_NAMES = (
    *("id", "fingerprint", "status", "task_uuid", "cost_usd", "cost_source", "estimate_usd"),
    *("completed_at", "run_id", "job", "model", "width", "height", "quality"),
)
_DETAIL_NAMES = ("prompt", "local_path", "image_url", "error_code", "error_message", "result_index")
_BASE: dict[str, pl.DataType] = {name: RESULTS_COLUMNS[name] for name in _BASE_NAMES}
DETAIL: dict[str, pl.DataType] = {name: RESULTS_COLUMNS[name] for name in _DETAIL_NAMES}
_KEPT_FROM_EVENT = ("id", "fingerprint", "task_uuid", "run_id", "completed_at", "cost_nano", "kind")
# -- which files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One results table and what lies beside it."""

    results: Path
    state: Path | None  # the job's state store, or the 0.1 ledger it is imported from on first use
    rejects: Path | None


def _results_for(path: Path) -> Path:
    if path.is_dir():
        return path / RESULTS_NAME
    if path.suffix == ".toml":
        from pipeline.config.jobspec import load_job_spec

        return load_job_spec(path).out_dir / RESULTS_NAME
    return path


def _state_files(folder: Path) -> tuple[Path, Path]:
    return folder / STATE_NAME, folder / LEDGER_NAME


def _expand(pattern: str) -> list[Path]:
    if glob.has_magic(pattern):
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise UsageError(f"{pattern}: matches no file")
        return [Path(m) for m in matches]
    return [Path(pattern)]


def resolve_sources(paths: Sequence[str]) -> list[Source]:
    """Job specs, output dirs and results files (globs expanded) -> the results tables to report on."""
    found: dict[Path, Source] = {}
    for pattern in paths:
        for path in _expand(pattern):
            if not path.exists():
                raise UsageError(f"{path}: no such file or directory")
            results = _results_for(path).resolve()
            if not results.is_file():
                raise UsageError(
                    f"{results}: no results table (has the job run? `pipeline results JOB.toml`)"
                )
            state = next((p for p in _state_files(results.parent) if p.is_file()), None)
            rejects = results.parent / REJECTS_NAME
            source = Source(results, state, rejects if rejects.is_file() else None)
            # one table per output dir: results.csv is a copy of results.parquet, never counted twice
            kept = found.get(results.parent)
            if kept is None or (kept.results.suffix == ".csv" and results.suffix == ".parquet"):
                found[results.parent] = source
    if not found:
        raise UsageError("no results table given")
    return list(found.values())


# -- which rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """Every charge, image, failure and reject of the sources: one lazy frame, ready to group."""

    frame: pl.LazyFrame
    by: tuple[str, ...]
    columns: frozenset[str]
    sources: tuple[Source, ...]
    notes: tuple[str, ...] = ()


def parse_when(text: str, *, end: bool = False) -> dt.datetime:
    """``2026-11-01`` or an ISO datetime, as UTC. A bare date used as ``end`` means the end of that day."""
    try:
        if len(text) == 10:
            day = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
            return day + dt.timedelta(days=1) if end else day
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"{text!r} is not a date (2026-11-01) or an ISO datetime") from exc
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _scan(path: Path) -> pl.LazyFrame:
    try:
        if path.suffix == ".csv":
            return pl.scan_csv(path, try_parse_dates=True, infer_schema_length=10_000)
        return pl.scan_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UsageError(f"{path}: cannot read results table ({exc})") from exc


def _schema(path: Path, scan: pl.LazyFrame) -> pl.Schema:
    try:
        schema = scan.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UsageError(f"{path}: not a results table ({exc})") from exc
    if missing := [name for name in _REQUIRED if name not in schema]:
        raise UsageError(f"{path}: not a results table (no column {', '.join(missing)})")
    return schema


def _column(name: str, schema: pl.Schema, dtype: pl.DataType) -> pl.Expr:
    if name not in schema:
        return pl.lit(None, dtype=dtype).alias(name)
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        have = schema[name]
        if have == pl.String:
            return col.str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
        if isinstance(have, pl.Datetime):
            utc = (
                col.dt.replace_time_zone("UTC") if have.time_zone is None else col.dt.convert_time_zone("UTC")
            )
            return utc.dt.cast_time_unit("us")
    return col.cast(dtype, strict=False)


def _table_facts(scan: pl.LazyFrame, schema: pl.Schema, extra: Sequence[str]) -> pl.LazyFrame:
    wanted = {**_BASE, **DETAIL}
    cols = [_column(name, schema, dtype) for name, dtype in wanted.items()]
    cols += [pl.col(name) for name in extra if name in schema and name not in wanted]
    succeeded = pl.col("status") == "succeeded"
    return scan.select(cols).with_columns(
        kind=pl.when(succeeded).then(pl.lit("image")).otherwise(pl.lit("failed")),
        cost_nano=nano(pl.col("cost_usd")),
        estimate_nano=nano(pl.col("estimate_usd")),
    )


def _charge_facts(source: Source, table: pl.LazyFrame) -> tuple[pl.LazyFrame | None, list[str]]:
    """The state's charges the table lacks, with the attributes of their row (from the table or the
    request the state recorded)."""
    store = read_state(source.results.parent)
    if store is None:
        return None, []
    with store:
        header = store.header()
        shown = None
        if source.results.suffix == ".parquet" and header is not None:
            shown = shown_seq(source.results, header.namespace)
        charges = state_charges(store, table.select("id", "fingerprint", "status", "task_uuid"), shown)
    if charges.is_empty():
        return None, []
    attrs = (
        table.join(charges.lazy().select("id", "fingerprint").unique(), on=["id", "fingerprint"], how="semi")
        .unique(["id", "fingerprint"], keep="first")
        .drop(
            *(
                c
                for c in (*_KEPT_FROM_EVENT, "estimate_nano", "status", *DETAIL)
                if c not in ("id", "fingerprint")
            )
        )
    )
    frame = charges.lazy().join(attrs, on=["id", "fingerprint"], how="left")
    have = frame.collect_schema()
    frame = frame.with_columns(
        pl.coalesce(pl.col(c), pl.col(f"{c}_state")).alias(c) for c in SHOWN if c in have
    ).drop(f"{c}_state" for c in SHOWN)
    notes = []
    unlisted = charges.filter(pl.col("kind") == "unlisted")
    if not unlisted.is_empty():
        spent = usd(int(unlisted["cost_nano"].sum()))
        notes.append(
            f"{source.results.parent / STATE_NAME}: {len(unlisted)} charged task(s) (${spent}) are not in"
            f" {source.results.name} yet; they count in spend (rebuild it with `pipeline results JOB.toml`)"
        )
    return frame, notes


def _reject_facts(source: Source, job: str | None) -> pl.LazyFrame | None:
    if source.rejects is None:
        return None
    try:
        rejects = pl.scan_parquet(source.rejects).select(pl.col("id").cast(pl.String))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UsageError(f"{source.rejects}: cannot read rejects ({exc})") from exc
    return rejects.with_columns(kind=pl.lit("rejected"), job=pl.lit(job, dtype=pl.String))


def _source_facts(
    index: int, source: Source, extra: Sequence[str]
) -> tuple[list[pl.LazyFrame], list[str], set[str]]:
    scan = _scan(source.results)
    schema = _schema(source.results, scan)
    table = _table_facts(scan, schema, extra)
    frames, notes = [table], []
    if source.state is not None:
        charged, more = _charge_facts(source, table)
        frames += [charged] if charged is not None else []
        notes += more
    else:
        notes.append(
            f"{source.results.parent}: no job state beside the results table; wasted spend counts only"
            " the charges the table shows"
        )
    job = table.select(pl.col("job").drop_nulls().first()).collect().item()
    rejected = _reject_facts(source, job or source.results.parent.name)
    frames += [rejected] if rejected is not None else []
    return [f.with_columns(source=pl.lit(index, dtype=pl.Int32)) for f in frames], notes, set(schema)


def load_facts(
    sources: Sequence[Source],
    by: Sequence[str] = (),
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Facts:
    """All sources as one frame of facts (kind: image, failed, waste, unlisted, rejected).

    ``since``/``until`` keep facts completed in ``[since, until)``; rejects have no time and are left out
    when either is given. Raises ``UsageError`` for a ``by`` key that no source has.
    """
    frames: list[pl.LazyFrame] = []
    notes: list[str] = []
    names: set[str] = set()
    for index, source in enumerate(sources):
        more_frames, more_notes, more_names = _source_facts(index, source, by)
        frames += more_frames
        notes += more_notes
        names |= more_names
    for key in by:
        if key not in names and key not in DERIVED_KEYS:
            available = ", ".join(sorted(names | set(DERIVED_KEYS)))
            raise UsageError(f"--by {key}: no such column or key; available: {available}")
    frame = pl.concat(frames, how="diagonal_relaxed")
    columns = frozenset(frame.collect_schema())
    if since is not None:
        frame = frame.filter(pl.col("completed_at") >= since)
    if until is not None:
        frame = frame.filter(pl.col("completed_at") < until)
    return Facts(frame, tuple(by), columns, tuple(sources), tuple(notes))
