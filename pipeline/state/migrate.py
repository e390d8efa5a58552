"""Importing a 0.1 ``ledger.jsonl`` into a state database, once; the ledger itself is never touched.

    summary = import_ledger(out_dir / "ledger.jsonl", out_dir / STATE_NAME, progress=show)
    store = open_job_state(out_dir, job=spec.name)   # imports first if there is a ledger and no state

The ledger is streamed (a 1 GB ledger never sits in memory) and recorded in transactions of ``batch``
events, each line kept exactly as the ledger held it. The import writes ``state.db.importing`` and renames
it to ``state.db`` only when complete: a killed import leaves no state, and the next one starts over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pipeline.files import replace_durably
from pipeline.state.durability import Durability
from pipeline.state.events import Event
from pipeline.state.ledger_file import LEDGER_NAME, ledger_entries
from pipeline.state.store import STATE_NAME, Store

__all__ = ["IMPORTING_SUFFIX", "ImportSummary", "Progress", "import_ledger", "open_job_state"]

IMPORTING_SUFFIX: Final = ".importing"
Progress = Callable[[int, int], None]  # (bytes of the ledger done, its total bytes)


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did."""

    ledger: Path
    state: Path
    events: int
    bytes: int


def open_job_state(
    out_dir: str | Path,
    *,
    job: str,
    durability: Durability = "group",
    group_commit_ms: float = 200.0,
    progress: Progress | None = None,
) -> Store:
    """The job's store in ``out_dir``: imported from its 0.1 ledger on first use, else opened or created."""
    out_dir = Path(out_dir)
    import_ledger(out_dir / LEDGER_NAME, out_dir / STATE_NAME, progress=progress)
    return Store.open(out_dir / STATE_NAME, job=job, durability=durability, group_commit_ms=group_commit_ms)


def import_ledger(
    ledger: str | Path,
    state: str | Path,
    *,
    progress: Progress | None = None,
    batch: int = 10_000,
) -> ImportSummary | None:
    """Import ``ledger`` into a new database at ``state``; None when there is nothing to do (no ledger,
    or ``state`` exists already: the import happened)."""
    ledger, state = Path(ledger), Path(state)
    if state.exists() or not ledger.exists():
        return None
    temp = state.with_name(state.name + IMPORTING_SUFFIX)
    _remove_database(temp)  # what a killed import left behind
    total = ledger.stat().st_size
    done = events = 0
    store = Store.open(temp, durability="never")
    try:
        lines = _ledger_lines(ledger)
        while chunk := _take(lines, batch):
            store.record_lines(chunk)
            events += len(chunk)
            done += sum(len(line) + 1 for _, _, line in chunk)
            if progress is not None:
                progress(min(done, total), total)
        store.compact()
    finally:
        store.close()  # checkpoints the WAL into the file and removes it
    replace_durably(temp, state)
    return ImportSummary(ledger, state, events, total)


def _ledger_lines(path: Path) -> Iterator[tuple[Event | None, str, str]]:
    """``(event or None for an unknown kind, kind, JSON line)`` of each complete line (checked, a torn
    last line skipped: ``ledger_file.ledger_entries``)."""
    for record, event in ledger_entries(path):
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False)  # the line as 0.1 wrote it
        yield event, str(record["event"]), line


def _take(lines: Iterator[tuple[Event | None, str, str]], n: int) -> list[tuple[Event | None, str, str]]:
    chunk = []
    for item in lines:
        chunk.append(item)
        if len(chunk) == n:
            break
    return chunk


def _remove_database(path: Path) -> None:
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
