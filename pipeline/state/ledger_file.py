"""Reading a 0.1 ``ledger.jsonl``, the JSON Lines event log that held a job's state before ``state.db``.

    for record, event in ledger_entries(out_dir / LEDGER_NAME):   # what the import records
        ...
    events = list(read_events(out_dir / LEDGER_NAME))              # the typed events alone

Nothing writes a ledger any more: ``pipeline.state.migrate`` imports it once and leaves it untouched. A
torn last line (0.1 crashed mid-write) is skipped, as 0.1 skipped it; an invalid line anywhere else is a
``LedgerError`` naming the file and line. Line 1 must be the job header; a kind this version does not know
comes back as ``None`` (its record is kept) and ``read_events`` leaves it out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from pipeline.errors import LedgerError
from pipeline.state.events import Event, JobEvent, event_from_dict

__all__ = ["LEDGER_NAME", "LedgerError", "ledger_entries", "read_events", "read_records"]

LEDGER_NAME: Final = "ledger.jsonl"
_decode = json.JSONDecoder().decode


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_number, parsed object)`` for each complete line; a torn last line is skipped, and no file
    reads as empty."""
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


def ledger_entries(path: str | Path) -> Iterator[tuple[dict[str, Any], Event | None]]:
    """``(record, its typed event or None for an unknown kind)`` of each complete line, checked: a known
    kind must have its fields, and the job header must be line 1 and only line 1."""
    for number, record in read_records(path):
        try:
            event = event_from_dict(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"{path}: line {number}: malformed {record['event']!r} event ({exc})") from exc
        if (number == 1) != isinstance(event, JobEvent):
            what = "line 1 is not the job header" if number == 1 else "a second job header"
            raise LedgerError(f"{path}: line {number}: {what}")
        yield record, event


def read_events(path: str | Path) -> Iterator[Event]:
    """The ledger's typed events in file order (unknown kinds left out)."""
    return (event for _, event in ledger_entries(path) if event is not None)
