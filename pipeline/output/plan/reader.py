"""The changed rows' history for ``pipeline plan``, read from the state while later batches are classified.

    with HistoryReader(store, options) as reader:  # a thread with its own read-only connection
        reader.add(ids)               # each batch's changed ids, as soon as the batch is classified
        history = reader.history()    # waits for the thread; raises what it raised (a StoreError...)
    history.sent, history.succeeded   # plan_history's ``history`` and ``succeeded`` frames

    read_history(store, ids, options)   # the same at once, on the caller's connection

Why a thread: the last request of a changed row lies in a compressed block of the event log, and with
1% of a million rows changed nearly every block holds one: reading them took 2.4 s of a 6.3 s plan.
zlib and SQLite release the GIL, and so does polars, so the reading overlaps the hashing and
classifying of the next batches on a second core: that plan takes 4.5-4.9 s on 2 cores (its JSON and
frame building still hold the GIL: the reading costs 0.8 s of wall instead of 2.4).

The thread reads in a snapshot of its own, begun just after the planner's. When a run committed in
between (the two snapshots end at different events), the thread reads nothing and ``history`` reads on
the planner's connection instead, at the end, as if there were no thread: a plan describes one state.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from pipeline.output.plan.history import history_frame
from pipeline.state import Store

__all__ = ["History", "HistoryReader", "read_history"]

_SUCCEEDED = pl.Schema({"id": pl.String, "fingerprint": pl.String})


@dataclass(frozen=True)
class History:
    """What the state holds of some ids: their requests sent (``history_frame``: the last one of each
    (id, fingerprint), oldest first) and their succeeded ``id, fingerprint``."""

    sent: pl.DataFrame
    succeeded: pl.DataFrame


def read_history(store: Store, ids: Sequence[str], options: Sequence[str]) -> History:
    """The history of ``ids`` (each id once), read on ``store``'s connection."""
    pages = [history_frame(sent, options) for sent in store.last_submitted_pages(ids)]
    succeeded = pl.DataFrame(store.succeeded_fingerprints(ids), schema=_SUCCEEDED, orient="row")
    return History(pl.concat([history_frame([], options), *pages]), succeeded)


def _concat(parts: Sequence[History], options: Sequence[str]) -> History:
    """One history of parts about different ids (each id's requests stay in their order)."""
    sent = pl.concat([history_frame([], options), *(part.sent for part in parts)])
    return History(sent, pl.concat([pl.DataFrame(schema=_SUCCEEDED), *(part.succeeded for part in parts)]))


class HistoryReader:
    """Reads the history of the ids given to ``add`` in one background thread (see the module).
    ``store``: the planner's, inside its snapshot (``Store.snapshot``)."""

    def __init__(self, store: Store, options: Sequence[str]) -> None:
        self._store = store
        self._options = tuple(options)
        self._last_seq = store.last_seq()  # where the planner's snapshot ends
        self._parts: list[History] = []
        self._unread: list[str] = []  # ids left to the planner's connection (another snapshot)
        self._error: BaseException | None = None
        self._queue: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="plan-history", daemon=True)
        self._thread.start()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, ids: list[str]) -> None:
        """Read the history of ``ids`` (none given before) in the background."""
        self._queue.put(ids)

    def history(self) -> History:
        """The history of every id added; raises what the thread raised."""
        self.close()
        if self._error is not None:
            raise self._error
        parts = self._parts
        if self._unread:
            parts = [*parts, read_history(self._store, self._unread, self._options)]
        return _concat(parts, self._options)

    def close(self) -> None:
        """Wait for the thread to read what it was given and close its connection. Idempotent."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _work(self) -> None:
        try:
            with Store.open(self._store.path, read_only=True) as own, own.snapshot():
                same = own.last_seq() == self._last_seq
                while (ids := self._queue.get()) is not None:
                    if same:
                        self._parts.append(read_history(own, ids, self._options))
                    else:
                        self._unread += ids
        except BaseException as exc:  # raised again by history(), in the planner's thread
            self._error = exc
