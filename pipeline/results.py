"""The results table: one row per image plus one per failed row, rebuilt from the ledger alone.

    write_results(spec.out_dir, spec.name, spec.output.formats)   # results.parquet (+ results.csv)
    rebuild_results(spec)                                          # the same, for `pipeline results`
    write_rejects(spec.out_dir, rejects)                           # rejects.parquet
    status_summary(state, total=..., rejected=...)                 # the `pipeline status --json` shape

Every write is atomic (temp file in the same folder, fsync, rename), so a reader never sees half a table.
The functions block (a 100k-row table takes a few seconds): call them through ``anyio.to_thread``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterable
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import polars as pl

from pipeline.errors import PipelineError
from pipeline.events import DownloadedEvent, Event, FailedEvent, JobEvent, SubmittedEvent, SucceededEvent
from pipeline.ledger import LEDGER_NAME, gc_paused, read_events
from pipeline.ledger_state import FAILED, IN_DOUBT, PENDING, SUCCEEDED, LedgerState

if TYPE_CHECKING:
    from pipeline.jobspec import JobSpec

__all__ = [
    "REJECTS_COLUMNS",
    "REJECTS_NAME",
    "RESULTS_COLUMNS",
    "RESULTS_NAME",
    "build_results",
    "rebuild_results",
    "remove_stale_temps",
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
_RESERVED = frozenset(RESULTS_COLUMNS)
_REQUEST_COLUMNS = ("model", "width", "height", "quality", "background", "output_format", "prompt")
_NO_REQUEST = (None,) * (len(_REQUEST_COLUMNS) + 2)  # + resolution, options
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


class _Submit:
    """The parts of a submitted event the table needs (compact: a ledger may hold a million)."""

    __slots__ = ("at", "estimate", "passthrough", "request", "task_uuid")

    def __init__(self, ev: SubmittedEvent, shared: dict[str, str]) -> None:
        self.task_uuid = ev.task_uuid
        self.at = ev.at
        self.estimate = ev.estimate_usd
        request = ev.request
        fields = tuple(_share(shared, request.get(name)) for name in _REQUEST_COLUMNS)
        self.request = fields + _option_fields(request.get("options"), shared)
        self.passthrough = ev.passthrough


def _option_fields(options: Any, shared: dict[str, str]) -> tuple[str | None, str | None]:
    """``(resolution, options as JSON)`` of a request's options (0.1's requests have none)."""
    if not isinstance(options, dict) or not options:
        return None, None
    resolution = options.get("resolution")
    text = json.dumps(options, sort_keys=True, separators=(",", ":"))
    return _share(shared, resolution), _share(shared, text)


def _share(shared: dict[str, str], value: Any) -> Any:
    """One object for each repeated short string (model, quality, format...) instead of one per row."""
    if isinstance(value, str) and len(value) <= 40:
        return shared.setdefault(value, value)
    return value


class _RowDetail:
    """What one (id, fingerprint) needs for its results lines."""

    __slots__ = ("attempts", "last", "last_failed", "last_kind", "older", "success", "success_submit")

    def __init__(self) -> None:
        self.attempts = 0
        self.last: _Submit | None = None
        self.older: dict[str, _Submit] | None = None  # earlier attempts, only for rows that retried
        self.success: SucceededEvent | None = None
        self.success_submit: _Submit | None = None
        self.last_failed: FailedEvent | None = None
        self.last_kind = ""

    @property
    def state(self) -> str:
        """The ledger's row-state rule (see ``pipeline.ledger_state``)."""
        if self.success is not None:
            return SUCCEEDED
        if self.last_kind == "submitted":
            return IN_DOUBT
        return FAILED if self.last_failed is not None and not self.last_failed.retryable else PENDING

    def submitted(self, submit: _Submit) -> None:
        if self.last is not None:
            self.older = self.older or {}
            self.older[self.last.task_uuid] = self.last
        self.last = submit
        self.attempts += 1

    def submit_of(self, task_uuid: str) -> _Submit | None:
        """The submitted event of ``task_uuid`` (else the last one, for a ledger missing it)."""
        if self.last is not None and self.last.task_uuid == task_uuid:
            return self.last
        return (self.older or {}).get(task_uuid, self.last)


def build_results(events: Iterable[Event], job: str | None = None) -> pl.DataFrame:
    """The results table for ``events`` (pure). ``job`` defaults to the ledger header's job name."""
    with gc_paused():
        details: dict[tuple[str, str], _RowDetail] = {}
        downloads: dict[tuple[str, int], DownloadedEvent] = {}
        shared: dict[str, str] = {}
        header_job: str | None = None
        for event in events:
            if isinstance(event, JobEvent):
                header_job = header_job or event.job
            else:
                _collect(event, details, downloads, shared)
        lines: list[tuple[Any, ...]] = []
        extras: list[dict[str, Any]] = []
        for detail in details.values():
            state = detail.state
            if state == SUCCEEDED and detail.success is not None:
                _success_lines(detail, detail.success, downloads, lines, extras)
            elif state == FAILED and detail.last_failed is not None:
                _failure_line(detail, detail.last_failed, lines, extras)
        del details
        return _frame(lines, extras, job if job is not None else header_job)


def _collect(
    event: Event,
    details: dict[tuple[str, str], _RowDetail],
    downloads: dict[tuple[str, int], DownloadedEvent],
    shared: dict[str, str],
) -> None:
    if isinstance(event, DownloadedEvent):
        downloads[(event.task_uuid, event.index)] = event
        return
    if not isinstance(event, (SubmittedEvent, SucceededEvent, FailedEvent)):
        return
    key = (event.id, event.fingerprint)
    detail = details.get(key)
    if detail is None:
        detail = details[key] = _RowDetail()
    detail.last_kind = event.kind
    if isinstance(event, SubmittedEvent):
        detail.submitted(_Submit(event, shared))
    elif isinstance(event, SucceededEvent):
        if detail.success is None:
            detail.success = event
            detail.success_submit = detail.submit_of(event.task_uuid)
    else:
        detail.last_failed = event


def _passthrough(submit: _Submit | None) -> dict[str, Any]:
    if submit is None:
        return {}
    extra = submit.passthrough
    if _RESERVED.isdisjoint(extra):
        return extra
    return {f"{k}_passthrough" if k in _RESERVED else k: v for k, v in extra.items()}


def _success_lines(
    detail: _RowDetail,
    success: SucceededEvent,
    downloads: dict[tuple[str, int], DownloadedEvent],
    lines: list[tuple[Any, ...]],
    extras: list[dict[str, Any]],
) -> None:
    submit = detail.success_submit
    n = max(len(success.images), 1)
    estimate = submit.estimate / n if submit and submit.estimate is not None else None
    share = success.cost_usd / n if success.cost_usd is not None else None
    extra = _passthrough(submit)
    request = submit.request if submit else _NO_REQUEST
    submitted_at = submit.at if submit else None
    for image in success.images:
        cost = image.cost_usd if image.cost_usd is not None else share
        source = "provider" if cost is not None else ("estimate" if estimate is not None else None)
        download = downloads.get((success.task_uuid, image.index))
        lines.append(
            (
                success.id,
                success.fingerprint,
                image.index,
                SUCCEEDED,
                success.task_uuid,
                image.image_uuid,
                image.image_url,
                cost if cost is not None else estimate,
                source,
                estimate,
                *request,
                download.path if download else None,
                download.sha256 if download else None,
                download.bytes if download else None,
                detail.attempts,
                None,
                None,
                submitted_at,
                success.at,
                success.run_id,
            )
        )
        extras.append(extra)


def _failure_line(
    detail: _RowDetail, failure: FailedEvent, lines: list[tuple[Any, ...]], extras: list[dict[str, Any]]
) -> None:
    submit = detail.submit_of(failure.task_uuid)
    lines.append(
        (
            failure.id,
            failure.fingerprint,
            None,
            FAILED,
            failure.task_uuid,
            None,
            None,
            None,
            None,
            submit.estimate if submit else None,
            *(submit.request if submit else _NO_REQUEST),
            None,
            None,
            None,
            detail.attempts,
            failure.code,
            failure.message,
            submit.at if submit else None,
            failure.at,
            failure.run_id,
        )
    )
    extras.append(_passthrough(submit))


_STAMP_COLUMNS = ("submitted_at", "completed_at")
_LINE_SCHEMA = {
    name: (pl.String if name in _STAMP_COLUMNS else dtype)
    for name, dtype in RESULTS_COLUMNS.items()
    if name not in ("latency_s", "job")
}


def _frame(lines: list[tuple[Any, ...]], extras: list[dict[str, Any]], job: str | None) -> pl.DataFrame:
    stamps = [pl.col(name).str.to_datetime(time_zone="UTC", strict=False) for name in _STAMP_COLUMNS]
    latency = (pl.col("completed_at") - pl.col("submitted_at")).dt.total_microseconds() / 1e6
    frame = (
        pl.DataFrame(lines, schema=_LINE_SCHEMA, orient="row")
        .with_columns(stamps)
        .with_columns(latency_s=latency.cast(pl.Float64), job=pl.lit(job, dtype=pl.String))
        .select(list(RESULTS_COLUMNS))
    )
    passthrough = _passthrough_frame(extras)
    return frame.hstack(passthrough) if passthrough.width else frame


def _passthrough_frame(extras: list[dict[str, Any]]) -> pl.DataFrame:
    """Values as given when a column's values share a type; else that column as text."""
    names = list(dict.fromkeys(name for extra in extras for name in extra))
    if not names:
        return pl.DataFrame()
    try:
        return pl.from_dicts(extras, schema=names, infer_schema_length=None)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return pl.DataFrame([_passthrough_series(name, [e.get(name) for e in extras]) for name in names])


def _passthrough_series(name: str, values: list[Any]) -> pl.Series:
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


def remove_stale_temps(out_dir: Path) -> list[Path]:
    """Delete the temp files that writes killed half-way left in ``out_dir``; returns what was removed.

    Call it only while holding the job's lock: then no live writer can own one of them.
    """
    removed = []
    for tmp in out_dir.glob(".*.tmp"):
        if tmp.is_file() and tmp.name.count(".") >= 3:  # .<name>.<random>.tmp, as write_atomic makes
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


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
