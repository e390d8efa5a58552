"""The plan's background reading of the changed rows' history: what the planner's connection would read,
in the planner's snapshot, and its errors raised in the planner's thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.output.plan.reader import History, HistoryReader, read_history
from pipeline.state import STATE_NAME, Store, StoreError
from pipeline.state.eventlog import BLOCK_EVENTS
from pipeline.state.events import ImageResult, SubmittedEvent, SucceededEvent

OPTIONS = ("seed", "steps")


def submitted(id: str, fp: str, prompt: str, attempt: int = 1) -> SubmittedEvent:
    request = {"model": "openai:1@2", "prompt": prompt, "width": 1024, "options": {"seed": attempt}}
    return SubmittedEvent(
        id=id,
        fingerprint=fp,
        task_uuid=f"{fp[:8]}-0000-5000-8000-{attempt:012d}",
        attempt=attempt,
        run_id="r1",
        estimate_usd=0.011,
        request=request,
    )


def succeeded(id: str, fp: str, attempt: int = 1) -> SucceededEvent:
    image = ImageResult(index=0, image_uuid="u", image_url="http://x/i.jpg", cost_usd=0.011)
    return SucceededEvent(
        id=id,
        fingerprint=fp,
        task_uuid=f"{fp[:8]}-0000-5000-8000-{attempt:012d}",
        run_id="r1",
        images=(image,),
        cost_usd=0.011,
    )


IDS = [f"r{i}" for i in range(BLOCK_EVENTS)]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A state whose rows were sent twice (retried, then edited) and mostly succeeded, in blocks."""
    events: list[SubmittedEvent | SucceededEvent] = []
    for i, id in enumerate(IDS):
        old, new = f"{i:064x}", f"{i + 10_000:064x}"
        events += [submitted(id, old, f"old {i}"), submitted(id, old, f"old {i}", attempt=2)]
        events += [succeeded(id, old, attempt=2), submitted(id, new, f"new {i}")]
        events += [succeeded(id, new)] if i % 3 else []
    with Store.open(tmp_path / STATE_NAME, job="t") as store:
        store.record_many(events)
        store.compact()
    return tmp_path / STATE_NAME


@pytest.fixture
def planner(path: Path) -> Iterator[Store]:
    """The planner's connection, inside its snapshot (begun by a first read, as the planner's is)."""
    with Store.open(path) as store, store.snapshot():
        store.counts()
        yield store


def ordered(history: History) -> tuple[pl.DataFrame, pl.DataFrame]:
    return history.sent.sort("id", "fingerprint"), history.succeeded.sort("id", "fingerprint")


def threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "plan-history"]


class TestHistoryReader:
    def test_batches_read_in_the_background_are_the_history_read_at_once(self, planner: Store) -> None:
        """The ids of several batches give the rows, requests and successes one read of them all gives."""
        with HistoryReader(planner, OPTIONS) as reader:
            for start in range(0, len(IDS), 100):
                reader.add(IDS[start : start + 100])
            history = reader.history()
        at_once = read_history(planner, IDS, OPTIONS)
        for got, expected in zip(ordered(history), ordered(at_once), strict=True):
            assert_frame_equal(got, expected)
        assert history.sent.height == 2 * len(IDS)  # the last request of each (id, fingerprint)
        assert history.succeeded.height == len(IDS) + len([i for i in range(len(IDS)) if i % 3])
        assert threads() == []

    def test_nothing_added_is_an_empty_history(self, planner: Store) -> None:
        """No changed row: empty frames with the history's columns."""
        with HistoryReader(planner, OPTIONS) as reader:
            history = reader.history()
        assert (history.sent.height, history.succeeded.height) == (0, 0)
        assert history.sent.columns[:3] == ["id", "fingerprint", "model"]

    def test_a_run_committing_meanwhile_is_not_seen(self, path: Path, planner: Store) -> None:
        """Events committed after the planner's snapshot began are not in the history, though the
        thread's connection opens after them."""
        with Store.open(path) as run:
            run.record(submitted("r1", "f" * 64, "sent during the plan"))
        with HistoryReader(planner, OPTIONS) as reader:
            reader.add(["r1", "r2"])
            history = reader.history()
        assert "sent during the plan" not in history.sent["prompt"].to_list()
        assert_frame_equal(ordered(history)[0], ordered(read_history(planner, ["r1", "r2"], OPTIONS))[0])

    def test_an_unreadable_event_is_raised_in_the_planners_thread(self, path: Path) -> None:
        """A row whose last request is not a ``submitted`` event: ``history`` raises the StoreError a
        read on the planner's connection raises, and the thread is gone."""
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE rows SET last_submit_seq = 1 WHERE id = 'r7'")  # seq 1: the job event
        conn.close()
        with Store.open(path) as planner, planner.snapshot():
            planner.counts()
            with pytest.raises(StoreError, match="'submitted' event was expected"):
                read_history(planner, ["r7"], OPTIONS)
            with HistoryReader(planner, OPTIONS) as reader:
                reader.add(["r1"])
                reader.add(["r7"])
                with pytest.raises(StoreError, match="'submitted' event was expected"):
                    reader.history()
        assert threads() == []

    def test_leaving_early_stops_the_thread(self, planner: Store) -> None:
        """An error in the planner (a bad manifest batch) leaves no thread and no connection behind."""
        with pytest.raises(RuntimeError), HistoryReader(planner, OPTIONS) as reader:
            reader.add(IDS[:10])
            raise RuntimeError("the manifest broke")
        assert threads() == []
