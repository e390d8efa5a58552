"""How durable a commit is: the 0.1 ledger's fsync policies, carried over to SQLite's write-ahead log.

    pragma = synchronous_pragma("group")        # "NORMAL"
    syncer = GroupSync(db_path, interval_s=0.2) # then syncer.mark() after each commit

- ``"always"``: ``synchronous=FULL``. Each commit fsyncs the WAL before it returns (a few ms on a disk):
  nothing committed is lost even on power loss. Use ``record_many`` to share one fsync between events.
- ``"group"`` (default): ``synchronous=NORMAL``. A commit is in the OS's page cache when it returns, so a
  killed process (SIGKILL, OOM, crash) loses nothing; a background thread fsyncs the WAL at most
  ``group_commit_ms`` after a commit, so power loss loses at most that window. Exactly 0.1's "group".
- ``"never"``: ``synchronous=NORMAL`` and no thread: the OS writes the WAL back when it wants.

SQLite's checkpoints (every ~1000 WAL pages, and on close) fsync the WAL and then the database file in
all three modes; ``NORMAL`` in WAL mode never corrupts the database, it can only lose the last commits.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Literal

__all__ = ["Durability", "GroupSync", "synchronous_pragma"]

Durability = Literal["always", "group", "never"]


def synchronous_pragma(durability: Durability) -> str:
    """The ``PRAGMA synchronous`` value for a policy."""
    return "FULL" if durability == "always" else "NORMAL"


class GroupSync:
    """Background fsync of a database's ``-wal`` file: soon after a commit, at most once per interval."""

    def __init__(self, db_path: Path, interval_s: float) -> None:
        self._wal = Path(f"{db_path}-wal")
        self._fd: int | None = None
        self._interval = interval_s
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._loop, name="state-group-commit", daemon=True)
        self._thread.start()

    def mark(self) -> None:
        """A commit just returned: fsync the WAL soon."""
        self._dirty.set()

    def _loop(self) -> None:
        while True:
            self._dirty.wait()
            if self._stopping.is_set():
                return
            self._dirty.clear()
            self._sync()
            if self._stopping.wait(self._interval):
                return

    def _sync(self) -> None:
        try:
            if self._fd is None:  # the WAL exists from the first commit on, and keeps its inode
                self._fd = os.open(self._wal, os.O_RDONLY)
            os.fsync(self._fd)  # fsync flushes the file, whichever descriptor asks
        except OSError as exc:
            self.error = exc

    def close(self) -> None:
        """Stop the thread (after a last fsync if a commit is pending)."""
        self._stopping.set()
        pending = self._dirty.is_set()
        self._dirty.set()
        self._thread.join()
        if pending:
            self._sync()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
