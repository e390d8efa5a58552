"""The ledger: ``output_dir/ledger.jsonl``, the append-only event log that is a job's source of truth.

    with LedgerWriter.for_spec(spec) as ledger:          # writes the "job" header line once
        ledger.append(RunEvent(run_id=run_id))           # written and flushed when it returns
    state = load_state(spec.out_dir / LEDGER_NAME)       # fold of every event
    state.row_state(row.id, row.fingerprint)             # "succeeded" / "failed" / "in_doubt" / "pending"
    task_uuid_for(state.namespace, fp, state.next_attempt(fp))

A torn last line (a crash mid-write) is ignored on read and cut off before the next append; an invalid line
anywhere else is a ``LedgerError`` naming the file and line. Typed events live in ``pipeline.events`` and
are re-exported here; the fold into ``LedgerState`` is in ``pipeline.ledger_state``.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline.errors import PipelineError
from pipeline.events import (
    DownloadedEvent,
    DownloadFailedEvent,
    Event,
    FailedEvent,
    ImageResult,
    JobEvent,
    RunEvent,
    SubmittedEvent,
    SucceededEvent,
    UploadedEvent,
    event_from_dict,
    event_to_json,
    utc_now,
)
from pipeline.ledger_state import (
    FAILED,
    IN_DOUBT,
    PENDING,
    ROW_STATES,
    SUCCEEDED,
    LedgerState,
    PendingDownload,
    RowRecord,
    fold,
    money,
)

if TYPE_CHECKING:
    from pipeline.jobspec import JobSpec

__all__ = [
    "FAILED",
    "IN_DOUBT",
    "LEDGER_NAME",
    "PENDING",
    "ROW_STATES",
    "SUCCEEDED",
    "DownloadFailedEvent",
    "DownloadedEvent",
    "Event",
    "FailedEvent",
    "FsyncPolicy",
    "ImageResult",
    "JobEvent",
    "LedgerError",
    "LedgerState",
    "LedgerWriter",
    "PendingDownload",
    "RowRecord",
    "RunEvent",
    "SubmittedEvent",
    "SucceededEvent",
    "UploadedEvent",
    "fold",
    "load_state",
    "money",
    "new_run_id",
    "read_events",
    "read_records",
    "task_uuid_for",
    "utc_now",
]

LEDGER_NAME = "ledger.jsonl"
FsyncPolicy = Literal["always", "group", "never"]
_CHUNK = 64 * 1024
_decode = json.JSONDecoder().decode


class LedgerError(PipelineError):
    """The ledger cannot be read or written (the message names the file and line)."""


def task_uuid_for(namespace: str, fingerprint: str, attempt: int) -> str:
    """Deterministic taskUUID of an attempt: UUIDv5 of the job namespace and ``"{fingerprint}:{attempt}"``."""
    return str(uuid.uuid5(uuid.UUID(namespace), f"{fingerprint}:{attempt}"))


def new_run_id() -> str:
    """A fresh run id (uuid4 hex)."""
    return uuid.uuid4().hex


# -- reading -------------------------------------------------------------------------------------------


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_number, parsed object)`` for each complete line; a torn last line is skipped."""
    path = Path(path)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LedgerError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with f:
        previous: bytes | None = None
        number = 0
        for raw in f:
            if previous is not None and (record := _parse_line(path, number, previous, last=False)):
                yield number, record
            previous, number = raw, number + 1
        if previous is not None and (record := _parse_line(path, number, previous, last=True)):
            yield number, record


def _parse_line(path: Path, number: int, raw: bytes, *, last: bool) -> dict[str, Any] | None:
    if last and not raw.endswith(b"\n"):
        return None  # torn: the crash came before the newline, so nothing acted on this line
    if not raw.strip():
        return None
    try:
        record = _decode(raw.decode())
        if not isinstance(record, dict) or not isinstance(record.get("event"), str):
            raise ValueError('not an object with an "event" key')
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if last:
            return None
        raise LedgerError(f"{path}: line {number}: invalid ledger line ({exc})") from exc
    return record


def read_events(path: str | Path) -> Iterator[Event]:
    """Typed events in file order. Line 1 must be the job header; unknown event kinds are skipped."""
    for number, record in read_records(path):
        try:
            event = event_from_dict(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"{path}: line {number}: malformed {record['event']!r} event ({exc})") from exc
        if (number == 1) != isinstance(event, JobEvent):
            what = "line 1 is not the job header" if number == 1 else "a second job header"
            raise LedgerError(f"{path}: line {number}: {what}")
        if event is not None:
            yield event


def load_state(path: str | Path, *, earlier_models: bool = False) -> LedgerState:
    """The fold of the ledger at ``path`` (an empty state if there is no ledger yet); ``earlier_models``:
    see ``fold``."""
    with gc_paused():
        return fold(read_events(path), earlier_models=earlier_models)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: folding millions of small objects triggers full passes over all of them, and
    none of them is cyclic garbage (a third of the time on a 100k-row ledger)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- writing -------------------------------------------------------------------------------------------


class LedgerWriter:
    """Appends events to ``ledger.jsonl``; each line is written and flushed to the OS before ``append``
    returns.

    The API is synchronous and fast (one ``write`` syscall per event), meant to be called from the engine's
    single writer task. fsync policy: ``"always"`` fsyncs every line inside ``append`` (it waits for the
    disk, ~ms); ``"group"`` fsyncs from a background thread at most every ``group_commit_ms`` (so at most
    that much of the log is at risk on power loss, never on a process crash); ``"never"`` leaves it to the
    OS. ``close()`` fsyncs unless the policy is ``"never"``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        job: str,
        fsync: FsyncPolicy = "group",
        group_commit_ms: float = 200.0,
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = self._open()
        try:
            self.repaired_bytes = _repair_tail(self._fd)
            header = _read_header(self._fd, self.path)
            if header is None:
                header = JobEvent(namespace=str(uuid.uuid4()), job=job)
                self._write(header)
                if fsync != "never":
                    os.fsync(self._fd)
        except BaseException:
            os.close(self._fd)
            raise
        self.namespace: str = header.namespace
        self.job: str = header.job
        self._committer = _GroupCommit(self._fd, group_commit_ms / 1000) if fsync == "group" else None

    @classmethod
    def for_spec(cls, spec: JobSpec) -> LedgerWriter:
        """The writer of ``spec.out_dir/ledger.jsonl`` with the spec's fsync policy."""
        return cls(
            spec.out_dir / LEDGER_NAME,
            job=spec.name,
            fsync=spec.ledger.fsync,
            group_commit_ms=spec.ledger.group_commit_ms,
        )

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot open: {exc.strerror or exc}") from exc

    def append(self, event: Event) -> None:
        """Write ``event`` as one line; on return it is in the OS (and on disk if fsync="always")."""
        if self._fd is None:
            raise LedgerError(f"{self.path}: ledger is closed")
        if self._committer is not None:
            self._committer.raise_error(self.path)
        self._write(event)
        if self.fsync == "always":
            self._sync()
        elif self._committer is not None:
            self._committer.mark()

    def _write(self, event: Event) -> None:
        assert self._fd is not None
        data = memoryview((event_to_json(event) + "\n").encode())
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc

    def _sync(self) -> None:
        assert self._fd is not None
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot fsync: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Stop the group-commit thread, fsync (unless "never") and close. Idempotent."""
        if self._fd is None:
            return
        try:
            if self._committer is not None:
                self._committer.close()
            if self.fsync != "never":
                self._sync()
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _GroupCommit:
    """Background fsync of a dup of the ledger's fd: soon after a write, at most once per interval."""

    def __init__(self, fd: int, interval_s: float) -> None:
        self._fd = os.dup(fd)
        self._interval = interval_s
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._loop, name="ledger-group-commit", daemon=True)
        self._thread.start()

    def mark(self) -> None:
        self._dirty.set()

    def _loop(self) -> None:
        while True:
            self._dirty.wait()
            if self._stopping.is_set():
                return
            self._dirty.clear()
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._error = exc
            if self._stopping.wait(self._interval):
                return

    def raise_error(self, path: Path) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise LedgerError(f"{path}: cannot fsync: {exc.strerror or exc}") from exc

    def close(self) -> None:
        self._stopping.set()
        self._dirty.set()
        self._thread.join()
        os.close(self._fd)


def _last_line_start(fd: int, size: int) -> int:
    """Offset where the file's last line starts (ignoring a final newline)."""
    end = size - 1  # the byte at size-1 may be the final "\n"; search before it
    while end > 0:
        start = max(0, end - _CHUNK)
        chunk = os.pread(fd, end - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def _repair_tail(fd: int) -> int:
    """Cut off a torn or unreadable last line so appends keep the file valid JSONL; bytes removed."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    start = _last_line_start(fd, size)
    line = os.pread(fd, size - start, start)
    if line.endswith(b"\n"):
        try:
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("event"), str):
                return 0
        except ValueError:
            pass
    os.ftruncate(fd, start)
    return size - start


def _read_header(fd: int, path: Path) -> JobEvent | None:
    """The job header of a non-empty ledger; None for an empty file."""
    if os.fstat(fd).st_size == 0:
        return None
    first = b""
    while b"\n" not in first:
        chunk = os.pread(fd, _CHUNK, len(first))
        if not chunk:
            break
        first += chunk
    try:
        record = json.loads(first.split(b"\n", 1)[0])
        header = event_from_dict(record)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LedgerError(f"{path}: line 1: not a ledger header ({exc})") from exc
    if not isinstance(header, JobEvent):
        raise LedgerError(f"{path}: line 1 is not the job header")
    return header
