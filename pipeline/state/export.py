"""The audit export: the job's whole event log as JSON Lines, the lines a 0.1 ledger held.

export_events(store, out_dir / "events.jsonl")   # atomically: a temp file, fsync, rename
store.export_jsonl(sys.stdout)                   # or streamed anywhere
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipeline.state.store import Store, StoreError

__all__ = ["export_events"]


def export_events(store: Store, dest: str | Path) -> int:
    """Write the event log to ``dest`` (replacing it only once complete); how many events."""
    dest = Path(dest)
    fd, temp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            count = store.export_jsonl(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, dest)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise StoreError(f"{dest}: cannot write the event log: {exc.strerror or exc}") from exc
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return count
