"""The audit export: the job's whole event log as JSON Lines, the lines a 0.1 ledger held.

export_events(store, out_dir / "events.jsonl")   # atomically: a temp file, fsync, rename
store.export_jsonl(sys.stdout)                   # or streamed anywhere
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.files import sink_atomic
from pipeline.state.store import Store, StoreError

__all__ = ["export_events"]


def export_events(store: Store, dest: str | Path) -> int:
    """Write the event log to ``dest`` (replacing it only once complete); how many events."""
    dest = Path(dest)
    counted: list[int] = []

    def into(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="\n") as out:
            counted.append(store.export_jsonl(out))

    try:
        sink_atomic(dest, into)
    except PipelineError as exc:
        raise StoreError(f"cannot write the event log: {exc}") from exc
    return counted[0]
