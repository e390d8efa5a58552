"""One run per job at a time: an advisory ``flock`` on ``output_dir/.lock``.

    with job_lock(spec.out_dir, spec.name):   # LockHeldError (exit 4) if another run holds it
        ...

The kernel releases the lock when its holder exits, however it exits (even SIGKILL), so a crash never
leaves a stale lock behind. The file holds the holder's pid, for the error message only.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import LockHeldError, PipelineError

__all__ = ["LOCK_NAME", "JobLock", "job_lock"]

LOCK_NAME = ".lock"


class JobLock:
    """The lock of one output dir. ``acquire()`` never waits; ``release()`` is idempotent."""

    def __init__(self, out_dir: str | Path, job: str) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self.job = job
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise ``LockHeldError`` naming the job and the holder's pid."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise PipelineError(f"{self.path}: cannot create the job lock: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            holder = f"pid {pid}" if pid else "pid unknown"
            raise LockHeldError(f"job {self.job} is already running ({holder}; lock {self.path})") from None
        except OSError as exc:
            os.close(fd)
            raise PipelineError(f"{self.path}: cannot lock: {exc.strerror or exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the next run in. The file stays (removing it would race with a waiting run)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


@contextmanager
def job_lock(out_dir: str | Path, job: str) -> Iterator[JobLock]:
    """Hold the job's lock for the ``with`` block (``LockHeldError``, exit 4, if another run has it)."""
    lock = JobLock(out_dir, job)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
