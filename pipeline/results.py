"""The results table: one row per image plus one per failed row, rebuilt from the ledger alone.

    write_results(spec.out_dir, spec.name, spec.output.formats)   # results.parquet (+ results.csv)
    rebuild_results(spec)                                          # the same, for `pipeline results`
    write_rejects(spec.out_dir, rejects)                           # rejects.parquet
    status_summary(state, total=..., rejected=...)                 # the `pipeline status --json` shape

Every write is atomic (temp file in the same folder, fsync, rename), so a reader never sees half a table.
The functions block (a 100k-row table takes about a second): call them through ``anyio.to_thread``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import polars as pl

from pipeline.errors import PipelineError
from pipeline.events import DownloadedEvent, Event, FailedEvent, SubmittedEvent, SucceededEvent
from pipeline.ledger import LEDGER_NAME, read_events
from pipeline.ledger_state import FAILED, IN_DOUBT, PENDING, SUCCEEDED, LedgerState

if TYPE_CHECKING:
    from pipeline.jobspec import JobSpec

__all__ = [
    "REJECTS_NAME",
    "RESULTS_COLUMNS",
    "RESULTS_NAME",
    "build_results",
    "rebuild_results",
    "status_summary",
    "write_atomic",
    "write_frame",
    "write_rejects",
    "write_results",
]

RESULTS_NAME = "results.parquet"
REJECTS_NAME = "rejects.parquet"
_UTC = pl.Datetime("us", "UTC")
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
    "model": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
    "quality": pl.String,
    "background": pl.String,
    "output_format": pl.String,
    "prompt": pl.String,
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
_REQUEST_COLUMNS = ("model", "width", "height", "quality", "background", "output_format", "prompt")
REJECTS_COLUMNS: dict[str, Any] = {"row_number": pl.Int64, "id": pl.String, "reason": pl.String}


class RejectLike(Protocol):
    """A manifest reject (``pipeline.manifest.Reject``)."""

    @property
    def row_number(self) -> int: ...
    @property
    def id(self) -> str | None: ...
    @property
    def reason(self) -> str: ...


# -- building ------------------------------------------------------------------------------------------


@dataclass
class _RowDetail:
    """What one (id, fingerprint) needs for its results lines."""

    submits: dict[str, SubmittedEvent] = field(default_factory=dict)  # task_uuid -> event
    last_submit: SubmittedEvent | None = None
    success: SucceededEvent | None = None
    last_failed: FailedEvent | None = None


def build_results(events: Iterable[Event], job: str | None = None) -> pl.DataFrame:
    """The results table for ``events`` (pure). ``job`` defaults to the ledger header's job name."""
    state = LedgerState()
    details: dict[tuple[str, str], _RowDetail] = {}
    downloads: dict[tuple[str, int], DownloadedEvent] = {}
    for event in events:
        state.apply(event)
        _collect(event, details, downloads)
    columns: dict[str, list[Any]] = {name: [] for name in RESULTS_COLUMNS}
    passthrough: dict[str, list[Any]] = {}
    job_name = job if job is not None else state.job
    for key, record in state.rows.items():
        detail = details[key]
        if record.state == SUCCEEDED and detail.success is not None:
            lines = _success_lines(detail, detail.success, downloads)
        elif record.state == FAILED and detail.last_failed is not None:
            lines = [_failure_line(detail, detail.last_failed)]
        else:
            continue
        for line, extra in lines:
            line["attempts"] = len(detail.submits)
            line["job"] = job_name
            _append(columns, passthrough, line, extra)
    return _frame(columns, passthrough)


def _collect(
    event: Event,
    details: dict[tuple[str, str], _RowDetail],
    downloads: dict[tuple[str, int], DownloadedEvent],
) -> None:
    if isinstance(event, SubmittedEvent):
        detail = details.setdefault((event.id, event.fingerprint), _RowDetail())
        detail.submits[event.task_uuid] = event
        detail.last_submit = event
    elif isinstance(event, SucceededEvent):
        detail = details.setdefault((event.id, event.fingerprint), _RowDetail())
        detail.success = detail.success or event
    elif isinstance(event, FailedEvent):
        details.setdefault((event.id, event.fingerprint), _RowDetail()).last_failed = event
    elif isinstance(event, DownloadedEvent):
        downloads[(event.task_uuid, event.index)] = event


_Line = tuple[dict[str, Any], dict[str, Any]]  # (standard columns, passthrough)


def _base_line(submit: SubmittedEvent | None, end: SucceededEvent | FailedEvent) -> _Line:
    request = submit.request if submit else {}
    submitted_at = _timestamp(submit.at) if submit else None
    completed_at = _timestamp(end.at)
    latency = (completed_at - submitted_at).total_seconds() if submitted_at and completed_at else None
    line: dict[str, Any] = {
        "id": end.id,
        "fingerprint": end.fingerprint,
        "task_uuid": end.task_uuid,
        "submitted_at": submitted_at,
        "completed_at": completed_at,
        "latency_s": latency,
        "run_id": end.run_id,
    }
    for name in _REQUEST_COLUMNS:
        line[name] = request.get(name)
    return line, dict(submit.passthrough) if submit else {}


def _success_lines(
    detail: _RowDetail, success: SucceededEvent, downloads: dict[tuple[str, int], DownloadedEvent]
) -> list[_Line]:
    submit = detail.submits.get(success.task_uuid, detail.last_submit)
    n = max(len(success.images), 1)
    estimate = submit.estimate_usd / n if submit and submit.estimate_usd is not None else None
    share = success.cost_usd / n if success.cost_usd is not None else None
    lines = []
    for image in success.images:
        line, extra = _base_line(submit, success)
        cost = image.cost_usd if image.cost_usd is not None else share
        download = downloads.get((success.task_uuid, image.index))
        line |= {
            "result_index": image.index,
            "status": SUCCEEDED,
            "image_uuid": image.image_uuid,
            "image_url": image.image_url,
            "cost_usd": cost if cost is not None else estimate,
            "cost_source": "provider" if cost is not None else ("estimate" if estimate is not None else None),
            "estimate_usd": estimate,
        }
        if download is not None:
            line |= {"local_path": download.path, "sha256": download.sha256, "bytes": download.bytes}
        lines.append((line, extra))
    return lines


def _failure_line(detail: _RowDetail, failure: FailedEvent) -> _Line:
    submit = detail.submits.get(failure.task_uuid, detail.last_submit)
    line, extra = _base_line(submit, failure)
    line |= {
        "status": FAILED,
        "error_code": failure.code,
        "error_message": failure.message,
        "estimate_usd": submit.estimate_usd if submit else None,
    }
    return line, extra


def _timestamp(text: str) -> dt.datetime | None:
    try:
        stamp = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


def _append(
    columns: dict[str, list[Any]],
    passthrough: dict[str, list[Any]],
    line: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    height = len(columns["id"])
    for name, values in columns.items():
        values.append(line.get(name))
    for raw_name, value in extra.items():
        name = f"{raw_name}_passthrough" if raw_name in RESULTS_COLUMNS else raw_name
        if name not in passthrough:
            passthrough[name] = [None] * height
        passthrough[name].append(value)
    for column in passthrough.values():
        if len(column) == height:
            column.append(None)


def _frame(columns: dict[str, list[Any]], passthrough: dict[str, list[Any]]) -> pl.DataFrame:
    series = [pl.Series(name, columns[name], dtype=dtype) for name, dtype in RESULTS_COLUMNS.items()]
    series += [_passthrough_series(name, values) for name, values in passthrough.items()]
    return pl.DataFrame(series)


def _passthrough_series(name: str, values: list[Any]) -> pl.Series:
    """Values as given when they share a type; else as text (JSON for lists and objects)."""
    try:
        return pl.Series(name, values)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        as_text = [v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in values]
        return pl.Series(name, as_text, dtype=pl.String)


# -- writing -------------------------------------------------------------------------------------------


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(file)`` into a temp file beside it, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise PipelineError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def _csv_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV has no nested types: lists and structs become JSON text."""
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    if not nested:
        return frame
    return frame.with_columns(
        pl.col(name).map_elements(lambda v: json.dumps(_plain(v)), return_dtype=pl.String) for name in nested
    )


def _plain(value: Any) -> Any:
    return value.to_list() if isinstance(value, pl.Series) else value


def write_frame(frame: pl.DataFrame, out_dir: Path, stem: str, formats: Collection[str]) -> Path:
    """``stem.parquet`` (always) and ``stem.csv`` (when asked), each written atomically."""
    parquet = write_atomic(out_dir / f"{stem}.parquet", frame.write_parquet)
    if "csv" in formats:
        csv_frame = _csv_safe(frame)
        write_atomic(out_dir / f"{stem}.csv", csv_frame.write_csv)
    return parquet


def write_results(
    out_dir: str | Path, job: str | None = None, formats: Collection[str] = ("parquet",)
) -> Path:
    """Rebuild ``results.parquet`` (and ``results.csv``) from ``out_dir/ledger.jsonl``; its path."""
    out = Path(out_dir)
    frame = build_results(read_events(out / LEDGER_NAME), job)
    return write_frame(frame, out, RESULTS_NAME.removesuffix(".parquet"), formats)


def rebuild_results(spec: JobSpec) -> Path:
    """`pipeline results JOB.toml`: the results table of the spec's output dir, from its ledger."""
    return write_results(spec.out_dir, spec.name, spec.output.formats)


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


# -- status --------------------------------------------------------------------------------------------


def status_summary(
    state: LedgerState,
    *,
    total: int | None = None,
    rejected: int | None = None,
    keys: Iterable[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The `pipeline status --json` payload (without ``exit_code``).

    ``keys``: the (id, fingerprint) of the manifest's accepted rows, to count only the current rows;
    without it every row the ledger has seen is counted. ``total`` includes rejected rows; rows of the
    manifest the ledger has never seen count as pending.
    """
    counts = _counts(state, keys)
    accounted = counts[SUCCEEDED] + counts[FAILED] + counts[IN_DOUBT]
    if total is not None:
        counts[PENDING] = max(0, total - (rejected or 0) - accounted)
    rows = {
        "total": total if total is not None else sum(counts.values()) + (rejected or 0),
        "rejected": rejected or 0,
        **{name: counts[name] for name in (SUCCEEDED, FAILED, PENDING, IN_DOUBT)},
    }
    return {
        "rows": rows,
        "images": state.images,
        "spent_usd": _usd(state.spent_usd),
        "downloads_pending": len(state.undownloaded),
        "runs": len(state.run_ids),
    }


def _counts(state: LedgerState, keys: Iterable[tuple[str, str]] | None) -> dict[str, int]:
    if keys is None:
        return state.counts()
    counts = dict.fromkeys((SUCCEEDED, FAILED, PENDING, IN_DOUBT), 0)
    for key in keys:
        record = state.rows.get(key)
        counts[record.state if record else PENDING] += 1
    return counts


def _usd(value: Decimal) -> float:
    return float(value)
