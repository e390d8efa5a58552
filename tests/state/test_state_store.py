"""The state store: each event's effect (hand-written expectations), any batching giving the same state,
durability, schema, event log."""

from __future__ import annotations

import io
import json
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import pipeline.state.schema as schema
from pipeline.state import SCHEMA_VERSION, STATE_NAME, SchemaError, Store, StoreError, export_events, rule
from pipeline.state.dialect import POSTGRES, SQLITE
from pipeline.state.eventlog import BLOCK_EVENTS
from pipeline.state.events import (
    DownloadedEvent,
    DownloadFailedEvent,
    Event,
    FailedEvent,
    ImageResult,
    JobEvent,
    RunEvent,
    SubmittedEvent,
    SucceededEvent,
    UploadedEvent,
    event_to_json,
)
from pipeline.state.ids import task_uuid_for
from pipeline.state.keys import FINGERPRINT, TASK
from pipeline.state.store import RowSummary

NS = "6f1c1f8e-3a59-4e0b-9d51-2d4a8f0f7c11"
FP = "ab" * 32


def submitted(id: str, fp: str = FP, attempt: int = 1, fmt: object = "JPG") -> SubmittedEvent:
    request = {"model": "openai:1@2", "prompt": f"p {id}", "output_format": fmt}
    return SubmittedEvent(
        id=id,
        fingerprint=fp,
        task_uuid=task_uuid_for(NS, fp, attempt),
        attempt=attempt,
        run_id="r1",
        estimate_usd=0.011,
        request=request,
        passthrough={"sku": id.upper()},
    )


def succeeded(
    id: str, fp: str = FP, attempt: int = 1, costs: tuple[float | None, ...] = (0.011,)
) -> SucceededEvent:
    images = tuple(
        ImageResult(index=i, image_uuid=f"img-{id}-{i}", image_url=f"http://x/{id}-{i}.webp", cost_usd=c)
        for i, c in enumerate(costs)
    )
    total = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    task = task_uuid_for(NS, fp, attempt)
    return SucceededEvent(id=id, fingerprint=fp, task_uuid=task, run_id="r1", images=images, cost_usd=total)


def failed(id: str, fp: str = FP, attempt: int = 1, retryable: bool = False) -> FailedEvent:
    task = task_uuid_for(NS, fp, attempt)
    return FailedEvent(
        id=id, fingerprint=fp, task_uuid=task, run_id="r1", code="c", message="m", retryable=retryable
    )


def downloaded(id: str, fp: str = FP, attempt: int = 1, index: int = 0) -> DownloadedEvent:
    task = task_uuid_for(NS, fp, attempt)
    return DownloadedEvent(
        id=id,
        fingerprint=fp,
        task_uuid=task,
        index=index,
        image_uuid=f"img-{id}-{index}",
        path=f"/out/images/{id}_{index}.jpg",
        sha256="cd" * 32,
        bytes=1234,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / STATE_NAME, job="demo") as opened:
        yield opened


def export(store: Store) -> list[str]:
    out = io.StringIO()
    store.export_jsonl(out)
    return out.getvalue().splitlines()


class TestRecord:
    def test_a_new_store_gets_a_job_header_and_keeps_it(self, tmp_path: Path) -> None:
        """The namespace of the task UUIDs is made once and survives reopening."""
        path = tmp_path / STATE_NAME
        with Store.open(path, job="demo") as store:
            namespace = store.namespace
        with Store.open(path, job="other") as store:
            assert store.namespace == namespace
            header = store.header()
            assert header is not None and header.job == "demo"
            assert len(export(store)) == 1

    def test_submitted_puts_the_row_in_doubt(self, store: Store) -> None:
        """A submitted task is in doubt, its attempt is taken, and in_doubt gives the event back."""
        event = submitted("a", attempt=3)
        store.record(event)
        assert store.row_state("a", FP) == rule.IN_DOUBT
        assert store.next_attempt(FP) == 4
        assert store.in_doubt() == [event]
        assert store.counts() == {"succeeded": 0, "failed": 0, "pending": 0, "in_doubt": 1}

    def test_succeeded_counts_images_spend_and_downloads(self, store: Store) -> None:
        """A success: images to download (extension from the request), exact spend."""
        store.record_many([submitted("a", fmt="PNG"), succeeded("a", costs=(0.1, 0.2))])
        assert store.row_state("a", FP) == rule.SUCCEEDED
        assert store.spent_usd() == Decimal("0.3")
        assert store.in_doubt() == []
        pending = store.undownloaded()
        assert [(p.index, p.ext, p.image_uuid) for p in pending] == [
            (0, "png", "img-a-0"),
            (1, "png", "img-a-1"),
        ]
        assert store.totals()["images"] == 2
        summary = store.row("a", FP)
        assert summary is not None and (summary.attempts, summary.images) == (1, 2)

    def test_failed_is_pending_when_retryable_else_failed(self, store: Store) -> None:
        """Retryable failures leave the row pending; a permanent one fails it for good."""
        store.record_many([submitted("a"), failed("a", retryable=True)])
        assert store.row_state("a", FP) == rule.PENDING
        store.record_many([submitted("a", attempt=2), failed("a", attempt=2, retryable=False)])
        assert store.row_state("a", FP) == rule.FAILED
        assert store.next_attempt(FP) == 3

    def test_downloaded_and_download_failed(self, store: Store) -> None:
        """A download takes the image off the list; a failed download only counts."""
        store.record_many([submitted("a"), succeeded("a", costs=(0.1, 0.1))])
        store.record(downloaded("a", index=0))
        task = task_uuid_for(NS, FP, 1)
        store.record(DownloadFailedEvent(id="a", fingerprint=FP, task_uuid=task, index=1, message="404"))
        assert [p.index for p in store.undownloaded()] == [1]
        totals = store.totals()
        assert (totals["downloaded"], totals["download_failures"]) == (1, 1)

    def test_uploads_and_runs(self, store: Store) -> None:
        """Uploads are found by content hash; runs are listed in order."""
        store.record_many([UploadedEvent(sha256="ef" * 32, image_uuid="u-1"), RunEvent(run_id="r1")])
        store.record(RunEvent(run_id="r2"))
        assert store.upload_for("ef" * 32) == "u-1"
        assert store.upload_for("00" * 32) is None
        assert store.uploads() == {"ef" * 32: "u-1"}
        assert store.run_ids() == ["r1", "r2"]

    def test_a_pending_download_is_found_by_task_and_index(self, store: Store) -> None:
        """One image's pending download, until it is downloaded."""
        store.record_many([submitted("a"), succeeded("a", costs=(0.1, 0.1))])
        task = task_uuid_for(NS, FP, 1)
        pending = store.pending_download(task, 1)
        assert pending is not None and (pending.id, pending.image_url) == ("a", "http://x/a-1.webp")
        store.record(downloaded("a", index=1))
        assert store.pending_download(task, 1) is None
        assert store.pending_download(task, 7) is None

    def test_last_submitted_per_row_of_the_ids_asked(self, store: Store) -> None:
        """The request sent last for each (id, fingerprint) of the ids asked, oldest first."""
        other = "cd" * 32
        first, second = submitted("a", attempt=1), submitted("a", attempt=2)
        store.record_many([first, failed("a", retryable=True), second, submitted("a", other), submitted("b")])
        assert [(e.id, e.fingerprint, e.attempt) for e in store.last_submitted(["a", "zz"])] == [
            ("a", FP, 2),
            ("a", other, 1),
        ]
        assert store.last_submitted([]) == []

    def test_successes_of_an_id_with_what_they_were_sent_as(self, store: Store) -> None:
        """Each success of an id, in order, with the request that produced it (earlier models)."""
        other = "cd" * 32
        first = submitted("a", fmt="PNG")
        store.record_many([submitted("b"), first, succeeded("a"), submitted("a", other), failed("a", other)])
        later = submitted("a", other, attempt=2)
        store.record_many([later, succeeded("a", other, attempt=2)])
        assert store.successes_of("a") == [(FP, first), (other, later)]
        assert store.successes_of("b") == []

    def test_a_second_success_is_a_duplicate_payment(self, store: Store) -> None:
        """Paid twice: both costs are spent, the row's images are not counted again."""
        store.record_many(
            [submitted("a"), succeeded("a"), submitted("a", attempt=2), succeeded("a", attempt=2)]
        )
        assert [e.task_uuid for e in store.duplicate_payments()] == [task_uuid_for(NS, FP, 2)]
        assert store.spent_usd() == Decimal("0.022")
        assert store.totals()["duplicate_successes"] == 1
        assert store.totals()["images"] == 1
        assert store.row_state("a", FP) == rule.SUCCEEDED

    def test_row_states_in_batches(self, store: Store) -> None:
        """A batch lookup answers for every known key (over several SQL chunks) and leaves out the rest."""
        events: list[Event] = []
        for i in range(1000):
            events.append(submitted(f"r{i}", fp=f"{i:064x}"))
            if i % 2:
                events.append(succeeded(f"r{i}", fp=f"{i:064x}"))
        store.record_many(events)
        keys = [(f"r{i}", f"{i:064x}") for i in range(1200)]
        states = store.row_states(keys)
        assert len(states) == 1000
        assert states[("r1", f"{1:064x}")] == rule.SUCCEEDED
        assert states[("r2", f"{2:064x}")] == rule.IN_DOUBT

    def test_events_are_exported_as_their_json_lines(self, store: Store) -> None:
        """The audit export holds each event's exact JSON, in the order recorded."""
        events = [submitted("a"), succeeded("a"), downloaded("a")]
        store.record_many(events)
        assert export(store)[1:] == [event_to_json(e) for e in events]

    def test_export_events_writes_a_whole_file(self, store: Store, tmp_path: Path) -> None:
        """The audit file holds every event, and no temp file is left beside it."""
        store.record_many([submitted("a"), succeeded("a")])
        dest = tmp_path / "audit" / "events.jsonl"
        dest.parent.mkdir()
        assert export_events(store, dest) == 3
        assert dest.read_text(encoding="utf-8").splitlines() == export(store)
        assert [p.name for p in dest.parent.iterdir()] == ["events.jsonl"]

    def test_any_fingerprint_text_is_kept_exactly(self, store: Store) -> None:
        """Fingerprints and task UUIDs that are not canonical hex still round-trip."""
        for fp in ("fp", "x" * 31, "F" * 64, "é" * 16):
            store.record_many([submitted(fp, fp=fp), succeeded(fp, fp=fp)])
            assert store.row_state(fp, fp) == rule.SUCCEEDED
        assert set(store.attempts()) == {"fp", "x" * 31, "F" * 64, "é" * 16}


def random_events(rng: random.Random, n: int) -> list[Event]:
    """Any order of task events over a few dozen rows (ids sharing fingerprints included), with successes
    rare enough that every state stays common."""
    events: list[Event] = []
    fps = [f"{k:064x}" for k in range(3)] + ["short-fp"]
    for _ in range(n):
        id, fp = rng.choice("abcdefgh"), rng.choice(fps)
        attempt = rng.randint(0, 4)
        kind = rng.random()
        if kind < 0.4:
            events.append(submitted(id, fp, attempt, fmt=rng.choice(["JPG", "webp", "", None])))
        elif kind < 0.47:
            costs = tuple(rng.choice([0.011, 0.1, None]) for _ in range(rng.randint(0, 3)))
            events.append(succeeded(id, fp, attempt, costs=costs))
        elif kind < 0.72:
            events.append(failed(id, fp, attempt, retryable=rng.random() < 0.6))
        elif kind < 0.9:
            events.append(downloaded(id, fp, attempt, index=rng.randint(0, 2)))
        elif kind < 0.95:
            events.append(UploadedEvent(sha256=rng.choice(["a", "b"]) * 64, image_uuid=f"u{rng.random()}"))
        else:
            events.append(RunEvent(run_id=f"run{rng.random()}"))
    return events


def task_keys(events: list[Event]) -> list[tuple[str, str]]:
    """The (id, fingerprint) of every row the events send or answer, in first-seen order."""
    task_kinds = (SubmittedEvent, SucceededEvent, FailedEvent)
    return list(dict.fromkeys((e.id, e.fingerprint) for e in events if isinstance(e, task_kinds)))


def snapshot(store: Store, keys: list[tuple[str, str]]) -> dict[str, object]:
    """Everything the store answers about the job's state (and about the rows ``keys``)."""
    return {
        "counts": store.counts(),
        "totals": store.totals(),
        "spent": str(store.spent_usd()),
        "attempts": store.attempts(),
        "uploads": store.uploads(),
        "runs": store.run_ids(),
        "in_doubt": store.in_doubt(),
        "undownloaded": store.undownloaded(),
        "duplicates": store.duplicate_payments(),
        "rows": {key: store.row(*key) for key in keys},
        "row_states": store.row_states(keys),
    }


def stated_rule(events: list[Event], key: tuple[str, str]) -> str:
    """The row-state rule as its documentation states it, read off the row's whole history: succeeded if
    any succeeded event; else in_doubt if the last task event is submitted; else failed if the last
    failed event has retryable=false; else pending."""
    mine = [e for e in events if isinstance(e, (SubmittedEvent, SucceededEvent, FailedEvent))]
    mine = [e for e in mine if (e.id, e.fingerprint) == key]
    if any(isinstance(e, SucceededEvent) for e in mine):
        return rule.SUCCEEDED
    if isinstance(mine[-1], SubmittedEvent):
        return rule.IN_DOUBT
    last_failure = mine[-1]
    assert isinstance(last_failure, FailedEvent)
    return rule.PENDING if last_failure.retryable else rule.FAILED


class TestEachEventsEffect:
    """Hand-written histories, with what each event does to the row, its attempts and the spend."""

    # The event; then the row ("a", FP)'s state, its submitted events, next_attempt(FP), the spend, and
    # the attempts of the tasks in doubt.
    STEPS = (
        (submitted("a", attempt=1), rule.IN_DOUBT, 1, 2, "0", [1]),
        (failed("a", attempt=1, retryable=True), rule.PENDING, 1, 2, "0", []),
        (submitted("a", attempt=2), rule.IN_DOUBT, 2, 3, "0", [2]),
        (failed("a", attempt=2, retryable=False), rule.FAILED, 2, 3, "0", []),
        (submitted("a", attempt=3), rule.IN_DOUBT, 3, 4, "0", [3]),  # a failed row sent again
        (succeeded("a", attempt=3, costs=(0.1, 0.2)), rule.SUCCEEDED, 3, 4, "0.3", []),
        (failed("a", attempt=3, retryable=False), rule.SUCCEEDED, 3, 4, "0.3", []),  # a success stands
        (submitted("a", attempt=4), rule.SUCCEEDED, 4, 5, "0.3", []),  # never in doubt again
        (succeeded("a", attempt=4, costs=(0.011,)), rule.SUCCEEDED, 4, 5, "0.311", []),  # paid twice
    )

    def test_a_row_through_every_transition(self, store: Store) -> None:
        """Each event moves the row as the rule says; a success is final, and a second one is money."""
        for event, state, sent, next_attempt, spent, in_doubt in self.STEPS:
            store.record(event)
            summary = store.row("a", FP)
            assert summary is not None
            assert (summary.state, summary.attempts) == (state, sent), event
            assert store.next_attempt(FP) == next_attempt, event
            assert str(store.spent_usd()) == spent, event
            assert [e.attempt for e in store.in_doubt()] == in_doubt, event
        assert summary.images == 2  # of the first success only
        totals = store.totals()
        assert (totals["images"], totals["duplicate_successes"]) == (2, 1)
        assert len(store.undownloaded()) == 2

    def test_each_row_state(self, store: Store) -> None:
        """succeeded / in_doubt / failed / pending / never seen, side by side, with the counts."""
        store.record_many(
            [
                submitted("ok"),
                succeeded("ok"),
                submitted("doubt"),
                submitted("gone"),
                failed("gone", retryable=False),
                submitted("retry"),
                failed("retry", retryable=True),
                submitted("late", fp="f2"),
                failed("late", fp="f2", retryable=True),
                submitted("late", fp="f2", attempt=2),
                succeeded("late", fp="f2", attempt=2),
                failed("late", fp="f2", attempt=3, retryable=False),
            ]
        )
        keys = [("ok", FP), ("doubt", FP), ("gone", FP), ("retry", FP), ("late", "f2"), ("never", FP)]
        assert [store.row_state(*key) for key in keys] == [
            rule.SUCCEEDED,
            rule.IN_DOUBT,
            rule.FAILED,
            rule.PENDING,
            rule.SUCCEEDED,  # any success wins
            None,
        ]
        assert store.counts() == {"succeeded": 2, "failed": 1, "pending": 1, "in_doubt": 1}

    def test_attempts_count_per_fingerprint_across_rows(self, store: Store) -> None:
        """Two ids with one fingerprint share its attempt numbers: a taskUUID is never reused."""
        store.record_many([submitted("x", fp="f", attempt=1), submitted("y", fp="f", attempt=2)])
        assert store.next_attempt("f") == 3
        assert store.next_attempt("other") == 1
        assert [store.row(id, "f") for id in "xy"] == [
            RowSummary(rule.IN_DOUBT, 1, 0),
            RowSummary(rule.IN_DOUBT, 1, 0),
        ]

    def test_spend_is_the_images_costs_exactly(self, store: Store) -> None:
        """Per-image costs add up in Decimal; unknown ones count 0; with none, the event's total counts."""
        no_costs = succeeded("c", costs=(None,))
        no_costs.cost_usd = Decimal("0.04")
        store.record_many([succeeded("a", costs=(0.1, 0.2)), succeeded("b", costs=(0.5, None)), no_costs])
        assert str(store.spent_usd()) == "0.84"

    def test_a_download_waits_with_the_extension_of_its_request(self, store: Store) -> None:
        """The file extension comes from the request's output format, else from the image's URL."""
        store.record_many([submitted("a", "a" * 64, fmt="JPEG"), succeeded("a", "a" * 64)])
        store.record_many([succeeded("b", "b" * 64)])  # answers no request this state holds
        store.record_many([submitted("c", "c" * 64, fmt=None), succeeded("c", "c" * 64)])
        store.record_many([submitted("d", "d" * 64), succeeded("d", "d" * 64), downloaded("d", "d" * 64)])
        assert [(p.id, p.ext) for p in store.undownloaded()] == [("a", "jpg"), ("b", "webp"), ("c", "webp")]


class TestAnyBatching:
    @pytest.mark.parametrize("seed", range(12))
    def test_random_histories_give_one_state_however_batched(self, tmp_path: Path, seed: int) -> None:
        """Any history recorded one event per transaction, or in batches of any size, gives the same
        state; each row's state and attempts are what the rule's own wording says of its history."""
        rng = random.Random(seed)
        events = random_events(rng, 300)
        keys = task_keys(events)
        with (
            Store.open(tmp_path / "each.db", job="demo") as each,
            Store.open(tmp_path / "batched.db") as batched,
        ):
            batched.record(each.header() or JobEvent(namespace=NS, job="demo"))
            for event in events:
                each.record(event)
            start = 0
            while start < len(events):
                size = rng.choice([1, 1, 2, 7, 50])
                batched.record_many(events[start : start + size])
                start += size
            assert snapshot(batched, keys) == snapshot(each, keys)
            assert each.row_states(keys) == {key: stated_rule(events, key) for key in keys}
            sent = [e for e in events if isinstance(e, SubmittedEvent)]
            for id, fp in keys:
                summary = each.row(id, fp)
                assert summary is not None
                assert summary.attempts == sum(1 for e in sent if (e.id, e.fingerprint) == (id, fp))
                assert each.next_attempt(fp) == 1 + max(
                    (e.attempt for e in sent if e.fingerprint == fp), default=0
                )


KILLED_WRITER = """
import sys
from pipeline.state.events import SubmittedEvent
from pipeline.state import Store
store = Store.open(sys.argv[1], job="demo", durability=sys.argv[2])
for i in range(1_000_000):
    ev = SubmittedEvent(id=f"r{i}", fingerprint=f"{i:064x}", task_uuid=f"t{i}", attempt=1, run_id="r",
                        estimate_usd=0.01, request={"prompt": "p"})
    store.record(ev)
    print(i, flush=True)  # after record() returned: the request would be sent now
"""


class TestDurability:
    @pytest.mark.parametrize("durability", ["group", "always"])
    def test_sigkill_never_loses_a_recorded_submitted(self, tmp_path: Path, durability: str) -> None:
        """Every submitted that record() returned for survives a SIGKILL of the writer."""
        path = tmp_path / STATE_NAME
        confirmed = -1
        with subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(path), durability], stdout=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                confirmed = int(line)
                if confirmed >= 300:
                    break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        with Store.open(path) as store:
            in_doubt = {e.id for e in store.in_doubt()}
            assert {f"r{i}" for i in range(confirmed + 1)} <= in_doubt
            assert store.counts()["in_doubt"] == len(in_doubt)
            assert len(export(store)) == len(in_doubt) + 1

    def test_another_connection_sees_committed_events_only(self, tmp_path: Path) -> None:
        """Mid-transaction, a second reader sees every earlier commit and nothing of the open batch."""
        path = tmp_path / STATE_NAME
        seen: list[set[str]] = []

        def batch() -> Iterator[tuple[Event | None, str, str]]:
            for ev in (submitted("b", fp="b" * 64), submitted("c", fp="c" * 64)):
                with Store.open(path) as reader:
                    seen.append({e.id for e in reader.in_doubt()})
                yield ev, ev.kind, event_to_json(ev)

        with Store.open(path, job="demo") as store:
            store.record(submitted("a"))
            store.record_lines(batch())
        assert seen == [{"a"}, {"a"}]
        with Store.open(path) as store:
            assert {e.id for e in store.in_doubt()} == {"a", "b", "c"}

    def test_a_failed_batch_changes_nothing(self, store: Store) -> None:
        """An error mid-batch rolls the whole batch back; the store keeps working."""

        def batch() -> Iterator[tuple[Event | None, str, str]]:
            ev = submitted("b", fp="b" * 64)
            yield ev, ev.kind, event_to_json(ev)
            raise RuntimeError("crash mid-batch")

        store.record(submitted("a"))
        with pytest.raises(RuntimeError):
            store.record_lines(batch())
        assert store.row_state("b", "b" * 64) is None
        store.record(succeeded("a"))
        assert len(export(store)) == 3
        assert store.counts()["succeeded"] == 1

    def test_disk_full_is_a_store_error_and_loses_nothing_committed(self, store: Store) -> None:
        """A full disk fails the record (StoreError), keeps every earlier commit, and recovers after."""
        store.record(submitted("a"))
        conn = sqlite3.connect(store.path)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.close()
        store._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now full
        big = [submitted(f"x{i}", fp=f"{i:064x}") for i in range(3000)]
        with pytest.raises(StoreError, match="full"):
            store.record_many(big)
        assert [e.id for e in store.in_doubt()] == ["a"]
        store._conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
        store.record_many(big)
        assert store.counts()["in_doubt"] == 3001


class TestSchema:
    def test_version_is_in_user_version(self, store: Store) -> None:
        """The schema version is readable without a table."""
        conn = sqlite3.connect(store.path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()

    def test_a_newer_database_is_refused(self, tmp_path: Path) -> None:
        """A state written by a newer version is never written by this one."""
        path = tmp_path / STATE_NAME
        Store.open(path, job="demo").close()
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        with pytest.raises(SchemaError, match="newer"):
            Store.open(path)

    def test_an_older_database_is_upgraded_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Opening runs the registered upgrade steps in one transaction and records the new version."""
        path = tmp_path / STATE_NAME
        with Store.open(path, job="demo") as store:
            store.record(submitted("a"))
        calls: list[int] = []

        def add_note(conn: sqlite3.Connection, dialect: object) -> None:
            calls.append(1)
            conn.execute("ALTER TABLE rows ADD COLUMN note TEXT")

        monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        monkeypatch.setitem(schema.MIGRATIONS, SCHEMA_VERSION, add_note)
        with Store.open(path) as store:
            assert store.row_state("a", FP) == rule.IN_DOUBT
        Store.open(path).close()
        assert calls == [1]
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert conn.execute("SELECT schema_version FROM job").fetchone()[0] == SCHEMA_VERSION + 1
        conn.close()

    def test_a_read_only_store_reads_and_never_writes(self, tmp_path: Path) -> None:
        """A second reader (the plan's background thread) sees the state, cannot change it, and never
        creates a database where there is none."""
        path = tmp_path / STATE_NAME
        with Store.open(path, job="demo") as store:
            store.record(submitted("a"))
        with Store.open(path, read_only=True) as reader:
            assert reader.row_state("a", FP) == rule.IN_DOUBT
            with pytest.raises(StoreError, match="readonly"):
                reader.record(submitted("b"))
        missing = tmp_path / "none" / STATE_NAME
        with pytest.raises(StoreError, match="cannot open"):
            Store.open(missing, read_only=True)
        assert not missing.parent.exists()

    def test_the_in_doubt_index_uses_the_rules_state_name(self) -> None:
        """The partial index of in-doubt rows is spelled with the state the rule writes."""
        assert any(f"WHERE state = '{rule.IN_DOUBT}'" in statement for statement in schema._TABLES)

    def test_ddl_and_queries_are_portable(self) -> None:
        """Only the dialect differs: PostgreSQL's spelling has no SQLite-only syntax or types."""
        for statement in schema._TABLES:
            pg = POSTGRES.ddl(statement)
            assert "WITHOUT ROWID" not in pg and "BLOB" not in pg and "AUTOINCREMENT" not in pg
        assert (
            POSTGRES.sql("SELECT a FROM t WHERE b = ? AND c = ?") == "SELECT a FROM t WHERE b = %s AND c = %s"
        )
        assert SQLITE.sql("WHERE b = ?") == "WHERE b = ?"


class TestEventLog:
    def test_compacted_events_read_and_export_the_same(self, tmp_path: Path) -> None:
        """Old events move into compressed blocks; lookups and the export do not notice."""
        events: list[Event] = []
        for i in range(BLOCK_EVENTS * 3):
            fp = f"{i:064x}"
            events += [submitted(f"r{i}", fp), succeeded(f"r{i}", fp)] if i % 5 else [submitted(f"r{i}", fp)]
        with Store.open(tmp_path / STATE_NAME, job="demo") as store:
            for start in range(0, len(events), 100):
                store.record_many(events[start : start + 100])
            blocks = store._conn.execute("SELECT COUNT(*) FROM event_blocks").fetchone()[0]
            assert blocks > 0
            assert len(store.in_doubt()) == BLOCK_EVENTS * 3 // 5 + (1 if (BLOCK_EVENTS * 3) % 5 else 0)
            store.compact()
            assert store._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
            lines = export(store)
            assert lines[1:] == [event_to_json(e) for e in events]
            done = [i for i in range(BLOCK_EVENTS * 3) if i % 5]
            assert store.counts() == {
                "succeeded": len(done),
                "failed": 0,
                "pending": 0,
                "in_doubt": BLOCK_EVENTS * 3 - len(done),
            }
            assert store.spent_usd() == Decimal("0.011") * len(done)
            assert [e.id for e in store.in_doubt()] == [f"r{i}" for i in range(0, BLOCK_EVENTS * 3, 5)]
            assert [p.id for p in store.undownloaded()] == [f"r{i}" for i in done]
            assert store.attempts() == {f"{i:064x}": 1 for i in range(BLOCK_EVENTS * 3)}
            late = submitted("late", "e" * 64)
            store.record(late)
            assert export(store)[-1] == event_to_json(late)
            assert json.loads(export(store)[0])["event"] == "job"

    def test_a_few_lines_of_each_block_read_as_the_whole_log_says(self, tmp_path: Path) -> None:
        """Reading a line here and there (a plan's changed rows) inflates blocks only part way, and gives
        the same lines as reading them all."""
        events = [submitted(f"r{i}", f"{i:064x}") for i in range(BLOCK_EVENTS * 4)]
        with Store.open(tmp_path / STATE_NAME, job="demo") as store:
            store.record_many(events)
            store.compact()
            lines = dict(enumerate(export(store), start=1))
            for step in (1, 7, BLOCK_EVENTS - 1, BLOCK_EVENTS * 2 + 3):
                seqs = list(range(2, len(lines) + 1, step))
                assert store.payloads(seqs) == {seq: lines[seq] for seq in seqs}
            for offsets in ([0], [BLOCK_EVENTS - 1], [0, BLOCK_EVENTS - 1], [3, BLOCK_EVENTS * 3 // 4]):
                seqs = [first + n for first in range(1, len(lines), BLOCK_EVENTS) for n in offsets]
                seqs = [seq for seq in seqs if seq in lines]
                assert store.payloads(seqs) == {seq: lines[seq] for seq in seqs}
            assert store.payloads([len(lines) + 5]) == {}


class TestBatchLookups:
    def test_unfinished_rows_of_a_batch_with_their_state(self, store: Store) -> None:
        """Done rows are left out; the others come with their (id, fingerprint)'s state and whether the
        id has any history."""
        other = "cd" * 32
        store.record_many([submitted("a"), succeeded("a"), submitted("b", other), succeeded("b", other)])
        store.record_many([submitted("c"), failed("c"), submitted("d")])
        ids = ["a", "b", "c", "d", "e"]
        found = store.unfinished(ids, [FINGERPRINT.pack(FP)] * len(ids))
        assert found == [(1, None, True), (2, rule.FAILED, True), (3, rule.IN_DOUBT, True), (4, None, False)]
        assert store.unfinished([], []) == []
        with pytest.raises(ValueError, match="32-byte digest"):
            store.unfinished(["a"], [b"short"])

    def test_any_id_text_is_looked_up(self, store: Store) -> None:
        """Ids go to the database as one JSON array: quotes, backslashes and any script are kept."""
        odd = ['q"uote', "back\\slash", "naïve 😀", "tab\tline\n"]
        store.record_many([e for id in odd for e in (submitted(id), succeeded(id))])
        assert store.unfinished([*odd, "other"], [FINGERPRINT.pack(FP)] * 5) == [(4, None, False)]
        assert sorted(store.succeeded_fingerprints([*odd, "other"])) == sorted((id, FP) for id in odd)

    def test_last_submitted_a_page_at_a_time(self, store: Store) -> None:
        """The pages hold, in order, what ``last_submitted`` gives at once."""
        store.record_many([submitted(f"r{i}", f"{i:064x}") for i in range(7)])
        ids = [f"r{i}" for i in (5, 1, 3, 0, 6)]
        pages = list(store.last_submitted_pages(ids, page=2))
        assert [len(page) for page in pages] == [2, 2, 1]
        assert [e for page in pages for e in page] == store.last_submitted(ids)
        assert [e.id for e in store.last_submitted(ids)] == ["r0", "r1", "r3", "r5", "r6"]

    def test_succeeded_fingerprints_of_the_ids_asked(self, store: Store) -> None:
        """Every succeeded (id, fingerprint) of the ids, whatever other rows the ids have."""
        other = "cd" * 32
        store.record_many(
            [submitted("a"), succeeded("a"), submitted("a", other), submitted("b"), succeeded("b")]
        )
        assert store.succeeded_fingerprints(["a", "zz"]) == [("a", FP)]
        assert store.succeeded_fingerprints([]) == []


class TestKeys:
    @pytest.mark.parametrize(
        "text", ["ab" * 32, "AB" * 32, "fp", "", "x" * 31, "x" * 32, "x" * 33, "é" * 16, "ab" * 31]
    )
    def test_fingerprints_pack_one_to_one(self, text: str) -> None:
        """Any text packs to a key that unpacks to it; only canonical digests take 32 bytes."""
        key = FINGERPRINT.pack(text)
        assert FINGERPRINT.unpack(key) == text
        assert (len(key) == 32) == (text == "ab" * 32)

    def test_task_uuids_pack_to_16_bytes(self) -> None:
        """A canonical task UUID takes 16 bytes; any other text still round-trips."""
        task = task_uuid_for(NS, FP, 1)
        assert len(TASK.pack(task)) == 16 and TASK.unpack(TASK.pack(task)) == task
        assert TASK.unpack(TASK.pack(task.upper())) == task.upper()


def test_public_names_exist() -> None:
    """Every name in ``pipeline.state.__all__`` resolves."""
    import pipeline.state

    assert [name for name in pipeline.state.__all__ if not hasattr(pipeline.state, name)] == []
