"""The run's writer: ``submitted`` is committed before ``commit`` returns, whatever the durability;
nothing queued is lost at the end of a run; a failed commit reaches every waiter."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from pipeline.errors import StoreError
from pipeline.run.recorder import Recorder
from pipeline.state import Store
from pipeline.state.durability import Durability
from pipeline.state.events import Event, RunEvent

pytestmark = pytest.mark.anyio

DURABILITIES: list[Durability] = ["group", "always", "never"]


def run_event(n: int) -> RunEvent:
    return RunEvent(run_id=f"run-{n}")


def committed_seq(path: Path) -> int:
    """The last seq another connection sees (what a crash right now would keep)."""
    with Store.open(path) as reader:
        return reader.last_seq()


@pytest.mark.parametrize("durability", DURABILITIES)
async def test_commit_returns_once_another_connection_sees_the_event(
    tmp_path: Path, durability: Durability
) -> None:
    path = tmp_path / "state.db"
    with Store.open(path, job="demo", durability=durability) as store:
        before = store.last_seq()
        recorder = Recorder(store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(recorder.run)
            for n in range(5):
                await recorder.commit(run_event(n))
                assert committed_seq(path) == before + n + 1  # durable before the request would leave
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("durability", DURABILITIES)
async def test_events_added_together_share_a_group_and_all_are_kept(
    tmp_path: Path, durability: Durability
) -> None:
    path = tmp_path / "state.db"
    groups: list[int] = []
    with Store.open(path, job="demo", durability=durability) as store:
        before = store.last_seq()
        recorder = Recorder(store, on_commit=groups.append)
        async with anyio.create_task_group() as tg:
            tg.start_soon(recorder.run)
            for n in range(50):
                recorder.add(run_event(n))  # no waiting: queued while the writer has not run yet
            await recorder.flushed()
            tg.cancel_scope.cancel()
    assert committed_seq(path) == before + 50
    assert recorder.committed == 50
    assert len(groups) < 50  # grouped: fewer commits than events
    assert groups[-1] == 50


@pytest.mark.parametrize("durability", DURABILITIES)
async def test_what_is_queued_when_the_run_ends_is_committed(tmp_path: Path, durability: Durability) -> None:
    path = tmp_path / "state.db"
    with Store.open(path, job="demo", durability=durability) as store:
        before = store.last_seq()
        recorder = Recorder(store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(recorder.run)
            await recorder.commit(run_event(0))
            for n in range(1, 20):
                recorder.add(run_event(n))
            tg.cancel_scope.cancel()  # before the writer had its turn
    assert committed_seq(path) == before + 20


class _FullDisk:
    """A store whose commits fail as a full disk makes them fail (``StoreError``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.commits_wait_for_disk = store.commits_wait_for_disk

    def record_many(self, events: list[Event]) -> int:
        raise StoreError(f"{self.store.path}: cannot record {len(events)} event(s): database or disk is full")


@pytest.mark.parametrize("durability", DURABILITIES)
async def test_a_failed_commit_reaches_every_waiter_and_ends_the_writer(
    tmp_path: Path, durability: Durability
) -> None:
    with Store.open(tmp_path / "state.db", job="demo", durability=durability) as store:
        recorder = Recorder(_FullDisk(store))  # type: ignore[arg-type]
        failures: list[str] = []

        async def waiter(n: int) -> None:
            try:
                await recorder.commit(run_event(n))
            except StoreError as exc:
                failures.append(str(exc))

        with pytest.raises(BaseExceptionGroup) as caught:
            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(waiter, n)
                tg.start_soon(recorder.run)
        assert caught.group_contains(StoreError, match="disk is full")
        assert len(failures) == 3  # no waiter goes on to send a request
        assert all("the run stopped" in message for message in failures)
        with pytest.raises(StoreError):
            recorder.add(run_event(9))  # nothing more is queued after the failure
