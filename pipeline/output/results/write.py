"""The results table: one row per image plus one per failed row, written from the job's state store.

    write_results(spec.out_dir, spec.name, spec.output.formats)   # results.parquet (+ results.csv)
    rebuild_results(spec)                                          # every line again: `pipeline results`
    write_rejects(spec.out_dir, rejects)                           # rejects.parquet

A table remembers the state it shows (the seq of the last event, in its Parquet metadata), so the next
write rebuilds only the rows whose events came after it and keeps the other lines of the previous table:
its row groups that hold none of those rows are copied byte for byte, never decoded
(``pipeline.output.results.table``), so a write costs what the rows it touches cost, plus copying the file. A
table without that mark (written by 0.1, by another job, or by hand) is rebuilt from the store's rows:
each line from its row's verdict, request and download events, decoded column by column
(``pipeline.output.results.lines``), a page of rows at a time; the event log is never replayed. Every write is
atomic (temp file in the same folder, fsync, rename), so a reader never sees half a table. The functions
block: call them through ``anyio.to_thread``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import polars as pl

from pipeline.errors import PipelineError, SpliceError
from pipeline.files import sink_atomic, write_atomic
from pipeline.output.results.lines import LINE_COLUMNS, RESULTS_COLUMNS, results_lines, verdict_frame
from pipeline.output.results.table import Lines, Parts, write_table, write_table_csv
from pipeline.output.status import read_state
from pipeline.state import Store
from pipeline.state.store import Verdict

if TYPE_CHECKING:
    from pipeline.config.jobspec import JobSpec

__all__ = [
    "REJECTS_COLUMNS",
    "REJECTS_NAME",
    "RESULTS_COLUMNS",
    "RESULTS_NAME",
    "rebuild_results",
    "remove_stale_temps",
    "shown_seq",
    "table_mark",
    "touched_rows",
    "write_frame",
    "write_rejects",
    "write_results",
]

log = logging.getLogger(__name__)

RESULTS_NAME = "results.parquet"
REJECTS_NAME = "rejects.parquet"
REJECTS_COLUMNS: dict[str, Any] = {"row_number": pl.Int64, "id": pl.String, "reason": pl.String}
_SEQ: Final = "image_pipeline.state_seq"  # Parquet metadata: the last event the table shows
_NAMESPACE: Final = "image_pipeline.namespace"  # ... of which job's state
_JOB: Final = "image_pipeline.job"
_TASK_KINDS: Final = frozenset({"submitted", "succeeded", "failed", "downloaded"})
_PARTS: Final = ".results-parts."  # a folder of the lines a write is building, removed when it ends
_PAGE: Final = 20_000  # rows whose lines are built at once
_EMPTY_DOWNLOADS = {"task_uuid": pl.String, "result_index": pl.Int64, "line": pl.String}


class RejectLike(Protocol):
    """A manifest reject (``pipeline.manifest.reader.Reject``)."""

    @property
    def row_number(self) -> int: ...
    @property
    def id(self) -> str | None: ...
    @property
    def reason(self) -> str: ...


# -- lines from the store ----------------------------------------------------------------------------


def _lines(store: Store, verdicts: list[Verdict], job: str | None) -> pl.DataFrame:
    """The results lines of ``verdicts`` in the table's columns (the job's name after the documented
    ones, then passthrough): their events fetched by seq, then decoded as columns."""
    lines = store.payloads([v.verdict_seq for v in verdicts] + [v.submit_seq or 0 for v in verdicts])
    frame = verdict_frame(
        [
            (v.id, v.fingerprint, v.state, v.attempts, lines.get(v.verdict_seq), lines.get(v.submit_seq or 0))
            for v in verdicts
        ]
    )
    tasks = frame["verdict"].str.json_path_match("$.task_uuid").drop_nulls().unique().to_list()
    found = store.downloads(tasks)
    files = store.payloads(seq for _, _, seq in found)
    downloads = pl.DataFrame(
        [(task, index, files.get(seq)) for task, index, seq in found], schema=_EMPTY_DOWNLOADS, orient="row"
    )
    made = results_lines(frame, downloads)
    return made.select(*LINE_COLUMNS, pl.lit(job, dtype=pl.String).alias("job"), pl.exclude(LINE_COLUMNS))


def touched_rows(store: Store, since: int) -> list[tuple[str, str]]:
    """(id, fingerprint) of the rows whose events came after ``since``: the lines that may change."""
    return _touched(store, since)[0]


def _touched(store: Store, since: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``touched_rows``, and those of them that may have had a line at ``since``: all but the rows whose
    fingerprint was first submitted after it (attempts count per fingerprint; a line needs a request)."""
    keys: dict[tuple[str, str], None] = {}
    new: set[tuple[str, str]] = set()
    for _, line in store.events_since(since):
        event = json.loads(line)
        kind = event.get("event")
        if kind in _TASK_KINDS:
            key = (str(event["id"]), str(event["fingerprint"]))
            keys[key] = None
            if kind == "submitted" and event.get("attempt") == 1:
                new.add(key)
    return list(keys), [key for key in keys if key not in new]


def shown_seq(path: Path, namespace: str) -> int | None:
    """The seq of the last event a results table of this state shows (None: not such a table)."""
    mark = table_mark(path)
    return int(mark[_SEQ]) if mark.get(_NAMESPACE) == namespace and _SEQ in mark else None


def table_mark(path: Path) -> dict[str, str]:
    """What a results table says of the state it shows (empty: no mark, unreadable or missing)."""
    try:
        meta = pl.read_parquet_metadata(path)
    except (OSError, pl.exceptions.PolarsError):
        return {}
    return {key: meta[key] for key in (_SEQ, _NAMESPACE, _JOB) if key in meta}


# -- writing -----------------------------------------------------------------------------------------


def write_results(
    out_dir: str | Path, job: str | None = None, formats: Collection[str] = ("parquet",)
) -> Path:
    """Bring ``results.parquet`` (and ``results.csv``) up to date with the state in ``out_dir``: only
    the rows changed since the table was written are rebuilt. Its path."""
    return _write(Path(out_dir), job, formats, full=False)


def rebuild_results(spec: JobSpec) -> Path:
    """`pipeline results JOB.toml`: every line of the table again, from the store."""
    return _write(spec.out_dir, spec.name, spec.output.formats, full=True)


def _write(out: Path, job: str | None, formats: Collection[str], *, full: bool) -> Path:
    try:
        try:
            return _write_from_state(out, job, formats, full=full)
        except SpliceError as exc:  # the previous table's row groups cannot be reused: rebuild it all
            if full:
                raise
            log.warning("%s: rebuilding it whole from the state (%s)", out / RESULTS_NAME, exc)
            return _write_from_state(out, job, formats, full=True)
    except OSError as exc:  # a part file, a full disk: the table was not written
        raise PipelineError(f"{out / RESULTS_NAME}: cannot write: {exc.strerror or exc}") from exc
    except (pl.exceptions.PolarsError, SpliceError) as exc:
        raise PipelineError(f"{out / RESULTS_NAME}: cannot write: {exc}") from exc


def _write_from_state(out: Path, job: str | None, formats: Collection[str], *, full: bool) -> Path:
    store = read_state(out)
    if store is None:
        empty = pl.DataFrame(schema=RESULTS_COLUMNS)
        return write_frame(empty, out, RESULTS_NAME.removesuffix(".parquet"), formats)
    parts = Path(tempfile.mkdtemp(prefix=_PARTS, dir=out))
    try:
        with store:
            plan = _read(store, out, job, formats, parts, full=full)
        if plan is None:
            return out / RESULTS_NAME
        return _publish(plan, out, formats)
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def _read(
    store: Store, out: Path, job: str | None, formats: Collection[str], parts: Path, *, full: bool
) -> Lines | None:
    """In one snapshot of the state: the lines to write (None: the table is up to date)."""
    with store.snapshot():
        header = store.header()
        namespace = header.namespace if header else ""
        job = job or (header.job if header else None)
        seq = store.last_seq()
        mark = {_SEQ: str(seq), _NAMESPACE: namespace, _JOB: job or ""}
        plan = Lines([], job, mark)
        table = out / RESULTS_NAME
        previous = {} if full else table_mark(table)
        if previous.get(_NAMESPACE) != namespace or _SEQ not in previous:
            pages: Iterable[list[Verdict]] = store.verdicts()
        else:
            if previous == mark and all((out / f"results.{f}").exists() for f in formats):
                return None
            keys, maybe = _touched(store, int(previous[_SEQ]))
            plan.previous, plan.previous_job = table, previous.get(_JOB)
            plan.touched = pl.DataFrame(keys, schema=plan.touched.schema, orient="row")
            plan.maybe = pl.DataFrame(maybe, schema=plan.touched.schema, orient="row")
            pages = store.verdicts(keys)
        files = Parts(parts)
        for page in _pages(pages):
            files.add(_lines(store, page, job))
        plan.parts = files.close()
    return plan


def _pages(pages: Iterable[list[Verdict]]) -> Iterator[list[Verdict]]:
    """``pages`` joined into pages of at least ``_PAGE`` rows (the store looks keys up 500 at a time;
    building lines costs about the same for 500 rows as for 20,000)."""
    page: list[Verdict] = []
    for more in pages:
        page += more
        if len(page) >= _PAGE:
            yield page
            page = []
    if page:
        yield page


def _publish(plan: Lines, out: Path, formats: Collection[str]) -> Path:
    """Write the lines to ``results.parquet`` (with the state's mark) and ``results.csv``."""
    table = out / RESULTS_NAME
    sink_atomic(table, lambda tmp: write_table(tmp, plan))
    if "csv" in formats:
        write_atomic(out / "results.csv", lambda f: write_table_csv(table, f))
    return table


# -- files ---------------------------------------------------------------------------------------------


def remove_stale_temps(out_dir: Path) -> list[Path]:
    """Delete the temp files (and part folders) that writes killed half-way left in ``out_dir``; returns
    what was removed.

    Call it only while holding the job's lock: then no live writer can own one of them.
    """
    removed = []
    for tmp in out_dir.glob(".*.tmp"):
        if tmp.is_file() and tmp.name.count(".") >= 3:  # .<name>.<random>.tmp, as write_atomic makes
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    for parts in out_dir.glob(f"{_PARTS}*"):
        if parts.is_dir():
            shutil.rmtree(parts, ignore_errors=True)
            removed.append(parts)
    return removed


def _plain(value: Any) -> Any:
    return value.to_list() if isinstance(value, pl.Series) else value


def _csv_safe(frame: pl.LazyFrame) -> pl.LazyFrame:
    """CSV has no nested types: lists and structs become JSON text."""
    nested = [name for name, dtype in frame.collect_schema().items() if dtype.is_nested()]
    if not nested:
        return frame
    return frame.with_columns(
        pl.col(name).map_elements(lambda v: json.dumps(_plain(v)), return_dtype=pl.String) for name in nested
    )


def write_frame(frame: pl.DataFrame, out_dir: Path, stem: str, formats: Collection[str]) -> Path:
    """``stem.parquet`` (always) and ``stem.csv`` (when asked), each written atomically."""
    parquet = write_atomic(out_dir / f"{stem}.parquet", frame.write_parquet)
    if "csv" in formats:
        csv_frame = _csv_safe(frame.lazy()).collect()
        write_atomic(out_dir / f"{stem}.csv", csv_frame.write_csv)
    return parquet


def write_rejects(out_dir: str | Path, rejects: Iterable[RejectLike], formats: Collection[str] = ()) -> Path:
    """``rejects.parquet`` (row_number, id, reason), replacing the previous run's, even when empty."""
    rows = list(rejects)
    frame = pl.DataFrame(
        {
            "row_number": [r.row_number for r in rows],
            "id": [r.id for r in rows],
            "reason": [r.reason for r in rows],
        },
        schema=REJECTS_COLUMNS,
    )
    return write_frame(frame, Path(out_dir), REJECTS_NAME.removesuffix(".parquet"), formats)
