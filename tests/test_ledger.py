"""The ledger: crash-safe appends, tolerant reads, and the state a resumed run sees."""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.fingerprint import request_fingerprint
from pipeline.ledger import (
    FAILED,
    IN_DOUBT,
    LEDGER_NAME,
    PENDING,
    SUCCEEDED,
    DownloadedEvent,
    DownloadFailedEvent,
    Event,
    FailedEvent,
    ImageResult,
    JobEvent,
    LedgerError,
    LedgerWriter,
    RunEvent,
    SubmittedEvent,
    SucceededEvent,
    UploadedEvent,
    event_from_dict,
    event_to_json,
    fold,
    load_state,
    read_events,
    task_uuid_for,
)
from pipeline.rows import ImageRequest, Row

NS = "6f1c1f8e-3a59-4e0b-9d51-2d4a8f0f7c11"


def submitted(id: str, fp: str = "fp", attempt: int = 1, fmt: str = "JPG") -> SubmittedEvent:
    request = {"model": "openai:1@2", "prompt": f"p {id}", "output_format": fmt}
    return SubmittedEvent(
        id=id,
        fingerprint=fp,
        task_uuid=task_uuid_for(NS, fp, attempt),
        attempt=attempt,
        run_id="r1",
        estimate_usd=0.011,
        request=request,
    )


def succeeded(
    id: str, fp: str = "fp", attempt: int = 1, costs: tuple[float | None, ...] = (0.1,)
) -> SucceededEvent:
    images = tuple(
        ImageResult(index=i, image_uuid=f"img-{id}-{i}", image_url=f"http://x/{id}-{i}.jpg", cost_usd=c)
        for i, c in enumerate(costs)
    )
    total = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    return SucceededEvent(
        id=id,
        fingerprint=fp,
        task_uuid=task_uuid_for(NS, fp, attempt),
        run_id="r1",
        images=images,
        cost_usd=total,
    )


def failed(id: str, fp: str = "fp", attempt: int = 1, retryable: bool = False) -> FailedEvent:
    return FailedEvent(
        id=id,
        fingerprint=fp,
        task_uuid=task_uuid_for(NS, fp, attempt),
        run_id="r1",
        code="invalidPrompt",
        message="refused",
        retryable=retryable,
    )


def header() -> JobEvent:
    return JobEvent(namespace=NS, job="demo")


def write_lines(path: Path, *lines: str) -> None:
    path.write_text("".join(lines), encoding="utf-8")


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "out" / LEDGER_NAME


class TestEvents:
    def test_every_event_round_trips_through_one_json_line(self) -> None:
        """What is written is what is read back, field for field."""
        events = [
            header(),
            RunEvent(run_id="r1"),
            UploadedEvent(sha256="ab" * 32, image_uuid="u1"),
            submitted("a"),
            succeeded("a", costs=(0.1, None)),
            failed("b"),
            DownloadedEvent(
                id="a",
                fingerprint="fp",
                task_uuid="t",
                index=0,
                image_uuid="u",
                path="p",
                sha256="s",
                bytes=3,
            ),
            DownloadFailedEvent(id="a", fingerprint="fp", task_uuid="t", index=1, message="404"),
        ]
        for event in events:
            line = event_to_json(event)
            assert "\n" not in line
            assert event_from_dict(json.loads(line)) == event

    def test_submitted_for_row_carries_request_and_passthrough(self) -> None:
        """The submitted line alone is enough to rebuild the results row."""
        request = ImageRequest("openai:1@2", "a red fox", 1024, 768, "low", "opaque", "PNG", 2, ("/r/a.png",))
        row = Row(
            row_number=3, id="sku-1", fingerprint="f1", request=request, passthrough={"category": "toys"}
        )
        ev = SubmittedEvent.for_row(row, task_uuid="t", attempt=1, run_id="r", estimate_usd=Decimal("0.011"))
        record = json.loads(event_to_json(ev))
        assert record["event"] == "submitted"
        assert record["request"]["prompt"] == "a red fox"
        assert record["request"]["reference_images"] == ["/r/a.png"]
        assert record["passthrough"] == {"category": "toys"}
        assert record["estimate_usd"] == 0.011

    def test_awkward_passthrough_values_become_strict_json(self) -> None:
        """NaN becomes null and dates become ISO strings, so the ledger stays readable everywhere."""
        import datetime as dt

        ev = SubmittedEvent(
            id="a",
            fingerprint="f",
            task_uuid="t",
            attempt=1,
            run_id="r",
            estimate_usd=None,
            request={},
            passthrough={"score": math.nan, "day": dt.date(2026, 1, 2), "price": Decimal("1.10")},
        )
        record = json.loads(event_to_json(ev))
        assert record["passthrough"] == {"score": None, "day": "2026-01-02", "price": 1.1}


class TestWriter:
    def test_header_is_written_once_and_namespace_kept(self, ledger: Path) -> None:
        """Reopening a ledger keeps its namespace, so task UUIDs stay the same across runs."""
        with LedgerWriter(ledger, job="demo") as first:
            first.append(RunEvent(run_id="r1"))
        with LedgerWriter(ledger, job="demo") as second:
            second.append(RunEvent(run_id="r2"))
        lines = [json.loads(line) for line in ledger.read_text().splitlines()]
        assert [line["event"] for line in lines] == ["job", "run", "run"]
        assert first.namespace == second.namespace == lines[0]["namespace"]
        assert uuid.UUID(first.namespace).version == 4

    def test_append_is_visible_before_it_returns(self, ledger: Path) -> None:
        """Another reader sees the line as soon as append returns, without close."""
        writer = LedgerWriter(ledger, job="demo", fsync="never")
        try:
            writer.append(submitted("a"))
            assert [type(e) for e in read_events(ledger)] == [JobEvent, SubmittedEvent]
        finally:
            writer.close()

    def test_torn_last_line_is_cut_before_appending(self, ledger: Path) -> None:
        """After a crash mid-write the next run appends to a valid file."""
        with LedgerWriter(ledger, job="demo") as writer:
            writer.append(submitted("a"))
        with ledger.open("a") as f:
            f.write('{"event":"succeeded","id":"a","finger')
        with LedgerWriter(ledger, job="demo") as writer:
            assert writer.repaired_bytes > 0
            writer.append(failed("a", retryable=True))
        lines = ledger.read_text().splitlines()
        assert [json.loads(line)["event"] for line in lines] == ["job", "submitted", "failed"]

    def test_unreadable_last_line_is_cut_too(self, ledger: Path) -> None:
        """A last line of garbage (e.g. zeros after a power cut) is dropped, not buried mid-file."""
        with LedgerWriter(ledger, job="demo") as writer:
            writer.append(submitted("a"))
        with ledger.open("ab") as f:
            f.write(b"\0\0\0\0\n")
        with LedgerWriter(ledger, job="demo") as writer:
            writer.append(failed("a"))
        assert load_state(ledger).row_state("a", "fp") == FAILED

    def test_torn_only_line_gets_a_fresh_header(self, ledger: Path) -> None:
        """A crash while writing the very first line leaves a usable ledger."""
        ledger.parent.mkdir(parents=True)
        ledger.write_bytes(b'{"event":"job","nam')
        with LedgerWriter(ledger, job="demo") as writer:
            writer.append(RunEvent(run_id="r"))
        assert [e.kind for e in read_events(ledger)] == ["job", "run"]

    def test_foreign_file_is_refused(self, ledger: Path) -> None:
        """A file that does not start with a job header is not silently appended to."""
        ledger.parent.mkdir(parents=True)
        ledger.write_text('{"event":"run","run_id":"x","at":"t"}\n')
        with pytest.raises(LedgerError, match="line 1"):
            LedgerWriter(ledger, job="demo")

    def test_append_after_close_is_an_error(self, ledger: Path) -> None:
        """A closed ledger refuses writes instead of losing them."""
        writer = LedgerWriter(ledger, job="demo")
        writer.close()
        writer.close()
        with pytest.raises(LedgerError, match="closed"):
            writer.append(RunEvent(run_id="r"))


class TestFsyncPolicy:
    @pytest.fixture
    def fsyncs(self, monkeypatch: pytest.MonkeyPatch) -> list[int]:
        calls: list[int] = []
        real = os.fsync

        def counting(fd: int) -> None:
            calls.append(fd)
            real(fd)

        monkeypatch.setattr(os, "fsync", counting)
        return calls

    def test_always_syncs_every_line(self, ledger: Path, fsyncs: list[int]) -> None:
        """fsync="always": every append is on disk when it returns."""
        with LedgerWriter(ledger, job="demo", fsync="always") as writer:
            fsyncs.clear()
            for i in range(5):
                writer.append(RunEvent(run_id=str(i)))
            assert len(fsyncs) == 5

    def test_never_leaves_it_to_the_os(self, ledger: Path, fsyncs: list[int]) -> None:
        """fsync="never": no fsync at all."""
        with LedgerWriter(ledger, job="demo", fsync="never") as writer:
            for i in range(5):
                writer.append(RunEvent(run_id=str(i)))
        assert fsyncs == []

    def test_group_commit_batches_and_still_syncs_soon(self, ledger: Path, fsyncs: list[int]) -> None:
        """fsync="group": a burst of lines costs few fsyncs, and a lone line is synced without close."""
        with LedgerWriter(ledger, job="demo", fsync="group", group_commit_ms=60_000) as writer:
            fsyncs.clear()
            for i in range(200):
                writer.append(RunEvent(run_id=str(i)))
            _wait_for(lambda: len(fsyncs) >= 1)
            assert len(fsyncs) == 1  # the next one waits for the (long) interval
        assert len(fsyncs) == 2  # close syncs the rest

        with LedgerWriter(ledger, job="demo", fsync="group", group_commit_ms=10) as writer:
            fsyncs.clear()
            writer.append(RunEvent(run_id="x"))
            _wait_for(lambda: len(fsyncs) >= 1)
            time.sleep(0.05)
            writer.append(RunEvent(run_id="y"))
            _wait_for(lambda: len(fsyncs) >= 2)

    def test_group_commit_thread_stops_on_close(self, ledger: Path) -> None:
        """Closing the writer leaves no background thread behind."""
        before = threading.active_count()
        with LedgerWriter(ledger, job="demo", fsync="group") as writer:
            writer.append(RunEvent(run_id="x"))
        assert threading.active_count() == before


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


class TestReading:
    def test_missing_ledger_reads_as_empty(self, ledger: Path) -> None:
        """A job that never ran has no state, not an error."""
        assert list(read_events(ledger)) == []
        assert load_state(ledger).rows == {}

    def test_torn_last_line_is_ignored(self, ledger: Path) -> None:
        """A crash mid-write loses only the line being written."""
        ledger.parent.mkdir(parents=True)
        write_lines(
            ledger, event_to_json(header()) + "\n", event_to_json(submitted("a")) + "\n", '{"event":"succ'
        )
        assert [e.kind for e in read_events(ledger)] == ["job", "submitted"]
        assert load_state(ledger).row_state("a", "fp") == IN_DOUBT

    def test_invalid_middle_line_names_file_and_line(self, ledger: Path) -> None:
        """Corruption inside the ledger stops with the line to look at, not a traceback."""
        ledger.parent.mkdir(parents=True)
        write_lines(
            ledger, event_to_json(header()) + "\n", "not json\n", event_to_json(submitted("a")) + "\n"
        )
        with pytest.raises(LedgerError, match=r"ledger\.jsonl: line 2"):
            load_state(ledger)

    def test_event_missing_a_field_names_the_line(self, ledger: Path) -> None:
        """A known event without its fields is reported with its line number."""
        ledger.parent.mkdir(parents=True)
        write_lines(ledger, event_to_json(header()) + "\n", '{"event":"submitted","id":"a"}\n', "\n")
        with pytest.raises(LedgerError, match="line 2: malformed 'submitted'"):
            load_state(ledger)

    def test_unknown_event_kinds_are_skipped(self, ledger: Path) -> None:
        """Lines from a newer version do not stop an older reader."""
        ledger.parent.mkdir(parents=True)
        write_lines(ledger, event_to_json(header()) + "\n", '{"event":"future","x":1}\n')
        assert [e.kind for e in read_events(ledger)] == ["job"]


class TestState:
    def fold_all(self, *events: object) -> object:
        return fold([header(), *events])  # type: ignore[list-item]

    def test_each_row_state(self) -> None:
        """succeeded / in_doubt / failed / pending follow the brief's rule."""
        state = fold(
            [
                header(),
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
        assert state.row_state("ok", "fp") == SUCCEEDED
        assert state.row_state("doubt", "fp") == IN_DOUBT
        assert state.row_state("gone", "fp") == FAILED
        assert state.row_state("retry", "fp") == PENDING
        assert state.row_state("late", "f2") == SUCCEEDED  # any success wins
        assert state.row_state("never", "fp") is None
        assert state.counts() == {SUCCEEDED: 2, FAILED: 1, PENDING: 1, IN_DOUBT: 1}

    def test_in_doubt_tasks_carry_what_reconciliation_needs(self) -> None:
        """A task whose last event is submitted comes back with its taskUUID, attempt and request."""
        state = fold(
            [header(), submitted("a", attempt=1), failed("a", retryable=True), submitted("a", attempt=2)]
        )
        [task] = state.in_doubt
        assert (task.id, task.attempt, task.task_uuid) == ("a", 2, task_uuid_for(NS, "fp", 2))
        assert task.request["prompt"] == "p a"

    def test_next_attempt_never_reuses_a_task_uuid(self) -> None:
        """Attempts count per fingerprint across all rows and runs."""
        state = fold([header(), submitted("a", fp="f", attempt=1), submitted("a", fp="f", attempt=2)])
        assert state.next_attempt("f") == 3
        assert state.next_attempt("other") == 1
        assert state.rows[("a", "f")].attempts == 2

    def test_spent_is_exact(self) -> None:
        """Costs sum exactly in Decimal: 0.1 + 0.2 is 0.3, not 0.30000000000000004."""
        state = fold(
            [header(), submitted("a"), succeeded("a", costs=(0.1, 0.2)), succeeded("b", costs=(0.011,))]
        )
        assert state.spent_usd == Decimal("0.311")
        assert state.images == 3

    def test_unknown_cost_counts_the_known_images(self) -> None:
        """cost_usd null: the images' own costs are summed (None counts as 0)."""
        state = fold([header(), succeeded("a", costs=(0.5, None))])
        assert state.spent_usd == Decimal("0.5")

    def test_duplicate_success_is_counted_as_money_spent(self) -> None:
        """Paying twice for a row shows up in spent and duplicate_successes, not in images."""
        state = fold([header(), succeeded("a", attempt=1), succeeded("a", attempt=2)])
        assert state.spent_usd == Decimal("0.2")
        assert state.duplicate_successes == 1
        assert state.images == 1

    def test_uploads_runs_and_namespace(self) -> None:
        """The namespace, run ids and uploaded references are remembered."""
        state = fold(
            [
                header(),
                RunEvent(run_id="r1"),
                UploadedEvent(sha256="s", image_uuid="u"),
                RunEvent(run_id="r2"),
            ]
        )
        assert state.namespace == NS and state.job == "demo"
        assert state.run_ids == ["r1", "r2"]
        assert state.uploads == {"s": "u"}

    def test_downloads_still_to_do(self) -> None:
        """Images of succeeded rows are pending download until a downloaded event, even after failures."""
        t = task_uuid_for(NS, "fp", 1)
        state = fold(
            [
                header(),
                submitted("a", fmt="PNG"),
                succeeded("a", costs=(0.1, 0.1)),
                DownloadedEvent(
                    id="a",
                    fingerprint="fp",
                    task_uuid=t,
                    index=0,
                    image_uuid="u",
                    path="p",
                    sha256="s",
                    bytes=1,
                ),
                DownloadFailedEvent(id="a", fingerprint="fp", task_uuid=t, index=1, message="HTTP 503"),
            ]
        )
        [pending] = state.undownloaded.values()
        assert (pending.id, pending.index, pending.ext, pending.image_url) == (
            "a",
            1,
            "png",
            "http://x/a-1.jpg",
        )
        assert state.downloaded == 1 and state.download_failures == 1


def catalog_row(model: str, prompt: str = "a red shoe", refs: tuple[str, ...] = (), **kw: str) -> Row:
    """A row as the manifest makes it: fingerprinted from its request (local references hashed)."""
    quality, background = kw.get("quality", "medium"), kw.get("background", "")
    request = ImageRequest(model, prompt, 1024, 1024, quality, background, "JPG", 1, refs)
    return Row(1, "sku-1", request_fingerprint(request), request)


def generated(row: Row, *, ok: bool = True) -> list[Event]:
    """The events of a run that sent ``row`` (and succeeded, unless ``ok`` is False)."""
    task = task_uuid_for(NS, row.fingerprint, 1)
    sent = SubmittedEvent.for_row(row, task_uuid=task, attempt=1, run_id="r1", estimate_usd=0.011)
    image = ImageResult(index=0, image_uuid="u", image_url="http://x/u.jpg", cost_usd=0.011)
    answer: Event = (
        SucceededEvent(
            id=row.id,
            fingerprint=row.fingerprint,
            task_uuid=task,
            run_id="r1",
            images=(image,),
            cost_usd=0.011,
        )
        if ok
        else FailedEvent(
            id=row.id,
            fingerprint=row.fingerprint,
            task_uuid=task,
            run_id="r1",
            code="invalidPrompt",
            message="refused",
            retryable=False,
        )
    )
    return [header(), sent, answer]


class TestEarlierModels:
    """[resume] keep_earlier_models: a row generated before on another model counts as done."""

    def test_a_row_switched_to_another_model_was_generated_by_the_earlier_one(self) -> None:
        old = catalog_row("openai:1@2", background="opaque")
        state = fold(generated(old), earlier_models=True)
        new = catalog_row("openai:gpt-image@2")
        assert state.row_state(new.id, new.fingerprint) is None
        assert state.generated_by_earlier_model(new)

    def test_only_when_asked(self) -> None:
        """A state folded without earlier_models keeps nothing more (and says no)."""
        state = fold(generated(catalog_row("openai:1@2")))
        assert state.earlier is None
        assert not state.generated_by_earlier_model(catalog_row("openai:gpt-image@2"))

    def test_an_edited_prompt_or_the_same_model_is_new_work(self) -> None:
        """Another prompt is not the same image; a new quality on the same model is not an earlier model."""
        state = fold(generated(catalog_row("openai:1@2")), earlier_models=True)
        assert not state.generated_by_earlier_model(catalog_row("openai:gpt-image@2", prompt="a blue shoe"))
        assert not state.generated_by_earlier_model(catalog_row("openai:1@2", quality="high"))

    def test_only_successes_count(self) -> None:
        events = generated(catalog_row("openai:1@2"), ok=False)
        state = fold(events, earlier_models=True)
        assert not state.generated_by_earlier_model(catalog_row("openai:gpt-image@2"))

    def test_reference_images_must_be_the_same_content(self, tmp_path: Path) -> None:
        """Same references: done. A reference file edited in place, or another reference: new work."""
        photo = tmp_path / "shoe.png"
        photo.write_bytes(b"\x89PNG first")
        refs = (str(photo), "https://cdn.example/box.png")
        state = fold(generated(catalog_row("openai:1@2", refs=refs)), earlier_models=True)
        assert state.generated_by_earlier_model(catalog_row("openai:gpt-image@2", refs=refs))
        assert not state.generated_by_earlier_model(catalog_row("openai:gpt-image@2", refs=refs[:1]))
        moved = photo.rename(tmp_path / "shoe-front.png")
        assert state.generated_by_earlier_model(
            catalog_row("openai:gpt-image@2", refs=(str(moved), refs[1]))
        )  # same content under another name
        moved.rename(photo)
        photo.write_bytes(b"\x89PNG second")
        assert not state.generated_by_earlier_model(catalog_row("openai:gpt-image@2", refs=refs))

    def test_load_state_passes_the_flag(self, ledger: Path) -> None:
        with LedgerWriter(ledger, job="demo") as writer:
            for event in generated(catalog_row("openai:1@2"))[1:]:
                writer.append(event)
        state = load_state(ledger, earlier_models=True)
        assert state.generated_by_earlier_model(catalog_row("openai:gpt-image@2"))


class TestTaskUuid:
    def test_deterministic_and_distinct(self) -> None:
        """Same (namespace, fingerprint, attempt) gives the same UUIDv5; anything else a new one."""
        a = task_uuid_for(NS, "fp", 1)
        assert a == task_uuid_for(NS, "fp", 1)
        assert uuid.UUID(a).version == 5
        others = {
            task_uuid_for(NS, "fp", 2),
            task_uuid_for(NS, "fp2", 1),
            task_uuid_for(str(uuid.uuid4()), "fp", 1),
        }
        assert a not in others and len(others) == 3
        assert a == str(uuid.uuid5(uuid.UUID(NS), "fp:1"))


WRITER = """
import sys
from pipeline.ledger import LedgerWriter, RunEvent
with LedgerWriter(sys.argv[1], job="demo", fsync="group", group_commit_ms=5) as ledger:
    for i in range(10**9):
        ledger.append(RunEvent(run_id=f"run-{i}-" + "x" * 2000))
        if i == 200:
            print("going", flush=True)
"""


class TestKill:
    def test_sigkill_mid_run_leaves_a_usable_ledger(self, ledger: Path) -> None:
        """kill -9 while appending: every complete line reads back and the next run appends cleanly."""
        import signal
        import subprocess
        import sys

        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(ledger)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "going"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        before = sum(1 for _ in read_events(ledger))
        assert before > 200
        with LedgerWriter(ledger, job="demo") as writer:
            writer.append(RunEvent(run_id="after"))
        events = list(read_events(ledger))
        assert events[-1] == RunEvent(run_id="after", at=events[-1].at)
        assert len(events) == before + 1
        assert ledger.read_bytes().endswith(b"\n")
