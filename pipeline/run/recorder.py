"""The run's one writer of the job's state: events queued by any task, committed in groups.

    recorder = Recorder(store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(recorder.run)
        await recorder.commit(submitted)   # committed (durable per [ledger] fsync) on return: now send
        recorder.add(succeeded)            # committed with the next group; the caller goes on
        await recorder.flushed()           # everything added so far is committed
        tg.cancel_scope.cancel()           # the writer commits what is still queued, then ends

Every state change of a run goes through this one task, one group at a time: whatever was queued since
the last group goes in the next one (one transaction each). A commit that returns from the page cache
(``fsync = "group"`` or ``"never"``: well under a millisecond for a group) is made on the event loop
itself, since handing it to a thread costs more: the thread waits for the GIL, up to Python's 5 ms
switch interval while the loop is busy, and every request waits for its ``submitted``. With ``fsync =
"always"`` each commit waits for the disk, so it is made in a worker thread while the loop keeps
sending, and what is queued meanwhile goes in the next group: the busier the run, the bigger the groups
(one fsync each). The store is used by one thread at a time and by nothing else: read the committed
state through a connection of your own. Only ``submitted`` is waited for: a verdict never holds up its
row.

A commit that fails (a full disk) raises ``StoreError`` in the writer, which ends the run; every waiter
gets the error too, so no request is sent whose ``submitted`` was not committed.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from pipeline.errors import StoreError
from pipeline.run.outcome import RunTotals
from pipeline.state import Store
from pipeline.state.events import Event

__all__ = ["Recorder"]

_AFTER = (
    "what it committed is kept: fix the cause (a full disk?) and run the job again (nothing is paid twice)"
)


class Recorder:
    """Group commit of a run's events into ``store`` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        totals: RunTotals | None = None,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.totals = totals if totals is not None else RunTotals()  # what this run committed
        self._on_commit = on_commit  # called with ``committed`` after each group
        self._queue: list[Event] = []
        self.added = 0  # events queued so far (the mark a caller waits for)
        self.committed = 0
        self.error: StoreError | None = None
        self._wake = anyio.Event()
        self._group = anyio.Event()  # set (and replaced) after each group
        self._wrote: list[Event] | None = None  # the last group committed

    def add(self, event: Event) -> int:
        """Queue ``event`` for the next group; its mark (``flushed`` until then)."""
        self._raise_error()
        self._queue.append(event)
        self.added += 1
        self._wake.set()
        return self.added

    async def commit(self, event: Event) -> None:
        """Queue ``event`` and return once it is committed."""
        await self._until(self.add(event))

    async def flushed(self) -> None:
        """Return once every event added so far is committed."""
        await self._until(self.added)

    async def _until(self, mark: int) -> None:
        while self.committed < mark:
            self._raise_error()
            await self._group.wait()
        self._raise_error()

    def _raise_error(self) -> None:
        if self.error is not None:
            raise StoreError(str(self.error))

    async def run(self) -> None:
        """The writer: commit whatever was queued since the last group, until cancelled."""
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                group, self._queue = self._queue, []
                await self._commit(group)
        finally:  # cancelled (end of run, or a second Ctrl-C): what is queued is kept, synchronously
            if self.error is None:
                group, self._queue = self._queue, []
                self._write(group)
                self._committed(group, True)

    async def _commit(self, group: list[Event]) -> None:
        try:
            if self.store.commits_wait_for_disk:
                # not abandoned when cancelled: a commit under way completes before the finally below
                await anyio.to_thread.run_sync(self._write, group)
            else:
                self._write(group)
        finally:
            # Cancelled before the thread ran: the group goes back to be written at the end; after it
            # ran: ``_wrote`` says it committed (the cancellation came with its return).
            done = self._wrote is group
            if not done and self.error is None:
                self._queue[:0] = group
            self._committed(group, done)

    def _write(self, group: list[Event]) -> None:
        if group:
            try:
                self.store.record_many(group)
            except StoreError as exc:
                self.error = StoreError(f"{exc}: the run stopped; {_AFTER}")
                raise self.error from exc
        self._wrote = group  # reached only once the group is committed

    def _committed(self, group: list[Event], done: bool) -> None:
        """After a group's commit (``done``) or its failure, on the event loop: wake the waiters."""
        self._group.set()
        self._group = anyio.Event()
        if not done:
            return
        self.committed += len(group)
        for event in group:
            self.totals.add(event)
        if self._on_commit is not None:
            self._on_commit(self.committed)
