"""Importing a 0.1 ledger: the real one of tests/data/v01_job (written by the 0.1 code; ``expected.json``
holds what 0.1 computed of it) and small hand-written ones in 0.1's line format. Every state, attempt
and dollar survives, the ledger is untouched, a torn or foreign file is handled as 0.1 handled it, and a
killed import starts over cleanly."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.paths import V01_JOB

from pipeline.state import LEDGER_NAME, STATE_NAME, LedgerError, Store, import_ledger, open_job_state
from pipeline.state.events import JobEvent, event_to_json
from pipeline.state.ledger_file import read_events
from pipeline.state.migrate import IMPORTING_SUFFIX
from pipeline.state.rule import PendingDownload

FIXTURE = V01_JOB
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A copy of the fixture's output dir (never touch the fixture itself)."""
    return Path(shutil.copytree(FIXTURE / "out", tmp_path / "out"))


@pytest.fixture
def store(out: Path) -> Iterator[Store]:
    assert import_ledger(out / LEDGER_NAME, out / STATE_NAME) is not None
    with Store.open(out / STATE_NAME) as opened:
        yield opened


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ledger_records(path: Path) -> list[dict[str, Any]]:
    """The ledger's lines, parsed as plain JSON (no pipeline code involved)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def exported(store: Store) -> list[str]:
    buffer = io.StringIO()
    store.export_jsonl(buffer)
    return buffer.getvalue().splitlines()


class TestEveryFactSurvives:
    def test_every_manifest_row_keeps_its_state_and_attempts(self, store: Store) -> None:
        """Each accepted row: the same state (None: never sent) and attempt number as 0.1 computed."""
        for row in EXPECTED["rows"]:
            assert store.row_state(row["id"], row["fingerprint"]) == row["state"], row["id"]
            assert store.next_attempt(row["fingerprint"]) - 1 == row["attempts"], row["id"]
            summary = store.row(row["id"], row["fingerprint"])
            assert (summary.attempts if summary else 0) == row["submitted_for_row"], row["id"]

    def test_every_ledger_row_keeps_state_submits_and_images(self, store: Store) -> None:
        """Rows that are only in the ledger (an edited prompt's old fingerprint) survive too."""
        for row in EXPECTED["ledger_rows"]:
            summary = store.row(row["id"], row["fingerprint"])
            assert summary is not None
            assert (summary.state, summary.attempts, summary.images) == (
                row["state"],
                row["submitted"],
                row["images"],
            )
        keys = [(row["id"], row["fingerprint"]) for row in EXPECTED["ledger_rows"]]
        assert store.row_states(keys) == {
            (r["id"], r["fingerprint"]): r["state"] for r in EXPECTED["ledger_rows"]
        }

    def test_attempts_per_fingerprint(self, store: Store) -> None:
        """Shared fingerprints (towel -a / -b) keep one counter, as in 0.1."""
        assert store.attempts() == EXPECTED["attempts"]

    def test_money(self, store: Store) -> None:
        """Spend is exactly the 0.1 Decimal, and the images are all counted."""
        assert str(store.spent_usd()) == EXPECTED["spent_usd"] == "0.506"
        totals = store.totals()
        assert totals["images"] == EXPECTED["images"] == 34
        assert totals["downloaded"] == EXPECTED["downloaded"]
        assert totals["download_failures"] == EXPECTED["download_failures"]
        assert totals["duplicate_successes"] == EXPECTED["duplicate_successes"]

    def test_in_doubt_tasks(self, store: Store) -> None:
        """The tasks a SIGKILL left unanswered are still in doubt, with their submitted events."""
        in_doubt = store.in_doubt()
        assert sorted(e.task_uuid for e in in_doubt) == sorted(EXPECTED["in_doubt_task_uuids"])
        by_task = {e.task_uuid: e for e in in_doubt}
        for expected in EXPECTED["in_doubt"]:
            event = by_task[expected["task_uuid"]]
            assert (event.id, event.fingerprint, event.attempt, event.run_id) == (
                expected["id"],
                expected["fingerprint"],
                expected["attempt"],
                expected["run_id"],
            )

    def test_uploads_downloads_counts_runs_and_header(self, store: Store) -> None:
        """Uploads by content hash, nothing left to download, rows per state, runs, job and namespace."""
        assert store.uploads() == EXPECTED["uploads"]
        assert [[p.task_uuid, p.index] for p in store.undownloaded()] == EXPECTED["undownloaded"]
        assert store.counts() == EXPECTED["counts"]
        assert store.run_ids() == EXPECTED["run_ids"]
        header = store.header()
        assert header is not None
        assert (header.job, header.namespace) == (EXPECTED["job"], EXPECTED["namespace"])

    def test_the_requests_sent_per_row(self, store: Store, out: Path) -> None:
        """The last request sent for each (id, fingerprint): both of the edited row's fingerprints."""
        last: dict[tuple[str, str], dict[str, Any]] = {}
        for record in ledger_records(out / LEDGER_NAME):
            if record["event"] == "submitted":
                last[(record["id"], record["fingerprint"])] = record
        ids = sorted({id for id, _ in last})
        sent = {(e.id, e.fingerprint): json.loads(event_to_json(e)) for e in store.last_submitted(ids)}
        assert sent == last
        assert len(store.last_submitted(["lamp-brass-night"])) == 2
        assert store.duplicate_payments() == []

    def test_export_gives_back_the_ledger(self, store: Store, out: Path) -> None:
        """The audit export is the ledger, line for line (equal JSON objects, in order; even the bytes)."""
        ledger_lines = (out / LEDGER_NAME).read_text(encoding="utf-8").splitlines()
        lines = exported(store)
        assert [json.loads(line) for line in lines] == [json.loads(line) for line in ledger_lines]
        assert lines == ledger_lines
        assert Counter(json.loads(line)["event"] for line in lines) == EXPECTED["events"]

    def test_in_doubt_tasks_are_their_submitted_lines_oldest_first(self, store: Store, out: Path) -> None:
        """Each in-doubt task comes back as the very ``submitted`` line 0.1 wrote, in ledger order."""
        wanted = set(EXPECTED["in_doubt_task_uuids"])
        lines = [
            record
            for record in ledger_records(out / LEDGER_NAME)
            if record["event"] == "submitted" and record["task_uuid"] in wanted
        ]
        assert [json.loads(event_to_json(e)) for e in store.in_doubt()] == lines


class TestImport:
    def test_the_ledger_is_kept_untouched(self, out: Path) -> None:
        """The 0.1 ledger stays, byte for byte, as the archive."""
        before = digest(out / LEDGER_NAME)
        import_ledger(out / LEDGER_NAME, out / STATE_NAME)
        assert digest(out / LEDGER_NAME) == before

    def test_it_happens_once(self, out: Path) -> None:
        """A second import does nothing: the state (with what was recorded since) is kept."""
        import_ledger(out / LEDGER_NAME, out / STATE_NAME)
        with Store.open(out / STATE_NAME) as store:
            store.record_many(store.in_doubt()[:1])
            events = len(exported(store))
        assert import_ledger(out / LEDGER_NAME, out / STATE_NAME) is None
        with Store.open(out / STATE_NAME) as store:
            assert len(exported(store)) == events

    def test_no_ledger_no_import(self, tmp_path: Path) -> None:
        """A job without a 0.1 ledger has nothing to import."""
        assert import_ledger(tmp_path / LEDGER_NAME, tmp_path / STATE_NAME) is None
        assert not (tmp_path / STATE_NAME).exists()

    def test_progress_reaches_the_ledger_size(self, out: Path) -> None:
        """Progress is reported per batch, in bytes, up to the ledger's size."""
        calls: list[tuple[int, int]] = []
        summary = import_ledger(
            out / LEDGER_NAME, out / STATE_NAME, progress=lambda d, t: calls.append((d, t)), batch=20
        )
        size = (out / LEDGER_NAME).stat().st_size
        assert summary is not None and summary.events == EXPECTED["ledger_lines"]
        assert len(calls) == -(-EXPECTED["ledger_lines"] // 20)
        assert [d for d, _ in calls] == sorted(d for d, _ in calls)
        assert calls[-1] == (size, size)

    def test_small_batches_give_the_same_state(self, out: Path, tmp_path: Path) -> None:
        """Batch boundaries do not matter: 7 events per transaction give what 10,000 give."""
        import_ledger(out / LEDGER_NAME, out / STATE_NAME)
        import_ledger(out / LEDGER_NAME, tmp_path / "small.db", batch=7)
        with Store.open(out / STATE_NAME) as one, Store.open(tmp_path / "small.db") as other:
            assert exported(one) == exported(other)
            assert (one.counts(), one.spent_usd(), one.attempts()) == (
                other.counts(),
                other.spent_usd(),
                other.attempts(),
            )

    def test_a_torn_last_line_is_ignored(self, out: Path) -> None:
        """A crash mid-write left half a line: it is skipped, as the 0.1 reader skips it."""
        ledger = out / LEDGER_NAME
        with ledger.open("ab") as f:
            f.write(b'{"event":"submitted","id":"half')
        import_ledger(ledger, out / STATE_NAME)
        with Store.open(out / STATE_NAME) as store:
            assert len(exported(store)) == EXPECTED["ledger_lines"]
            assert str(store.spent_usd()) == "0.506"

    def test_a_bad_line_stops_the_import_and_leaves_no_state(self, out: Path) -> None:
        """An invalid line in the middle is a LedgerError naming it; no half state is left behind."""
        ledger = out / LEDGER_NAME
        lines = ledger.read_bytes().splitlines(keepends=True)
        ledger.write_bytes(b"".join([*lines[:10], b"not json\n", *lines[10:]]))
        with pytest.raises(LedgerError, match="line 11"):
            import_ledger(ledger, out / STATE_NAME, batch=5)
        assert not (out / STATE_NAME).exists()

    def test_a_killed_import_starts_over(self, out: Path, tmp_path: Path) -> None:
        """SIGKILL mid-import leaves no state.db; the next import gives exactly the clean import's state."""
        script = (
            "import os, signal, sys\n"
            "from pipeline.state import import_ledger\n"
            "def kill(done, total):\n"
            "    if done > total // 2: os.kill(os.getpid(), signal.SIGKILL)\n"
            "import_ledger(sys.argv[1], sys.argv[2], progress=kill, batch=20)\n"
        )
        ledger, state = out / LEDGER_NAME, out / STATE_NAME
        result = subprocess.run([sys.executable, "-c", script, str(ledger), str(state)], check=False)
        assert result.returncode == -signal.SIGKILL
        assert not state.exists()
        assert state.with_name(STATE_NAME + IMPORTING_SUFFIX).exists()
        assert import_ledger(ledger, state) is not None
        assert not state.with_name(STATE_NAME + IMPORTING_SUFFIX).exists()
        import_ledger(ledger, tmp_path / "clean.db")
        with Store.open(state) as resumed, Store.open(tmp_path / "clean.db") as clean:
            assert exported(resumed) == exported(clean)
            assert resumed.counts() == clean.counts()
            assert resumed.attempts() == clean.attempts()

    def test_open_job_state_imports_on_first_use(self, out: Path) -> None:
        """The job's store comes from its 0.1 ledger the first time, with the ledger's namespace."""
        with open_job_state(out, job="v01-fixture") as store:
            assert store.namespace == EXPECTED["namespace"]
            assert str(store.spent_usd()) == "0.506"
        assert (out / LEDGER_NAME).exists()


# -- small hand-written ledgers, in 0.1's line format (see tests/data/v01_job/out/ledger.jsonl) ---------

NS = "6f1c1f8e-3a59-4e0b-9d51-2d4a8f0f7c11"
AT = "2026-11-23T10:00:00.000Z"
FP = {name: name * 64 for name in "abcd"}  # one fingerprint per row
SHA = "ef" * 32


def task(row: str, attempt: int) -> str:
    """A task UUID of the row's attempt (0.1 wrote UUIDv5s; the import takes any text as it is)."""
    return f"{'abcd'.index(row) + 1:08d}-0000-5000-8000-{attempt:012d}"


def line(event: str, **fields: Any) -> str:
    """One ledger line as 0.1 wrote it: compact JSON, ``event`` first, ``at`` last."""
    return json.dumps({"event": event, **fields, "at": AT}, separators=(",", ":")) + "\n"


def task_line(event: str, row: str, attempt: int, /, **fields: Any) -> str:
    """A line about one of the row's tasks: its id, fingerprint and task UUID first."""
    return line(event, id=row, fingerprint=FP[row], task_uuid=task(row, attempt), **fields)


def header(job: str = "demo", namespace: str = NS) -> str:
    return line("job", namespace=namespace, job=job, version=1)


def submitted(row: str, attempt: int = 1, fmt: str = "JPG") -> str:
    request = {
        "model": "openai:1@2",
        "prompt": f"a {row}",
        "width": 1024,
        "height": 1024,
        "quality": "medium",
        "background": "opaque",
        "output_format": fmt,
        "number_results": 1,
        "reference_images": [],
    }
    sku = {"sku": row.upper()}
    return task_line(
        "submitted",
        row,
        attempt,
        attempt=attempt,
        run_id="r1",
        estimate_usd=0.011,
        request=request,
        passthrough=sku,
    )


def succeeded(row: str, attempt: int, *costs: float) -> str:
    images = [
        {"index": i, "image_uuid": f"img-{row}-{i}", "image_url": f"http://x/{row}-{i}.jpg", "cost_usd": c}
        for i, c in enumerate(costs)
    ]
    return task_line("succeeded", row, attempt, run_id="r1", images=images, cost_usd=sum(costs))


def failed(row: str, attempt: int, *, retryable: bool) -> str:
    code = "timeout" if retryable else "invalidPrompt"
    return task_line("failed", row, attempt, run_id="r1", code=code, message="m", retryable=retryable)


# Row a succeeded with two images (one downloaded, one download failed); b failed twice, the second time
# for good; c failed and may be retried; d was sent when the process was killed: in doubt.
SMALL_JOB = [
    header(),
    line("run", run_id="r1"),
    line("uploaded", sha256=SHA, image_uuid="u-1"),
    submitted("a", fmt="PNG"),
    succeeded("a", 1, 0.011, 0.011),
    task_line(
        "downloaded", "a", 1, index=0, image_uuid="img-a-0", path="/out/a_0.png", sha256=SHA, bytes=1234
    ),
    task_line("download_failed", "a", 1, index=1, message="HTTP 503"),
    submitted("b", 1),
    failed("b", 1, retryable=True),
    submitted("b", 2),
    failed("b", 2, retryable=False),
    submitted("c", 1),
    failed("c", 1, retryable=True),
    submitted("d", 1),
]


def write_ledger(folder: Path, lines: list[str], torn: bytes = b"") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LEDGER_NAME
    path.write_bytes("".join(lines).encode() + torn)
    return path


def imported(folder: Path) -> Store:
    assert import_ledger(folder / LEDGER_NAME, folder / STATE_NAME) is not None
    return Store.open(folder / STATE_NAME)


class TestASmallLedger:
    def test_each_rows_state_attempts_and_spend(self, tmp_path: Path) -> None:
        """What each row's lines say: succeeded, failed for good, pending, in doubt; every cent spent."""
        write_ledger(tmp_path, SMALL_JOB)
        with imported(tmp_path) as store:
            states = {row: store.row_state(row, FP[row]) for row in "abcd"}
            assert states == {"a": "succeeded", "b": "failed", "c": "pending", "d": "in_doubt"}
            assert store.counts() == {"succeeded": 1, "failed": 1, "pending": 1, "in_doubt": 1}
            assert store.attempts() == {FP["a"]: 1, FP["b"]: 2, FP["c"]: 1, FP["d"]: 1}
            assert [store.next_attempt(FP[row]) for row in "abcd"] == [2, 3, 2, 2]
            summaries = {row: store.row(row, FP[row]) for row in "abcd"}
            assert {row: (s.attempts, s.images) for row, s in summaries.items() if s} == {
                "a": (1, 2),
                "b": (2, 0),
                "c": (1, 0),
                "d": (1, 0),
            }
            assert str(store.spent_usd()) == "0.022"

    def test_the_in_doubt_task_is_reconciled_with_its_own_task_uuid(self, tmp_path: Path) -> None:
        """The task a kill left unanswered comes back whole: taskUUID, attempt, request, passthrough."""
        write_ledger(tmp_path, SMALL_JOB)
        with imported(tmp_path) as store:
            [event] = store.in_doubt()
            assert json.loads(event_to_json(event)) == json.loads(SMALL_JOB[-1])
            assert (event.task_uuid, event.attempt, event.passthrough) == (task("d", 1), 1, {"sku": "D"})

    def test_uploads_downloads_and_runs(self, tmp_path: Path) -> None:
        """An uploaded reference is reused; the image whose download failed is still to download."""
        write_ledger(tmp_path, SMALL_JOB)
        with imported(tmp_path) as store:
            assert store.upload_for(SHA) == "u-1"
            pending = PendingDownload("a", FP["a"], task("a", 1), 1, "img-a-1", "http://x/a-1.jpg", "png")
            assert store.undownloaded() == [pending]
            totals = store.totals()
            assert (totals["images"], totals["downloaded"], totals["download_failures"]) == (2, 1, 1)
            assert totals["duplicate_successes"] == 0
            assert store.run_ids() == ["r1"]
            assert store.header() == JobEvent(namespace=NS, job="demo", at=AT)

    def test_the_export_is_the_ledger(self, tmp_path: Path) -> None:
        """The audit export gives back every line, as written."""
        write_ledger(tmp_path, SMALL_JOB)
        with imported(tmp_path) as store:
            assert exported(store) == [text.rstrip("\n") for text in SMALL_JOB]


class TestReadingTheLedger:
    def test_missing_ledger_reads_as_empty(self, tmp_path: Path) -> None:
        """A job that never ran has no events, not an error."""
        assert list(read_events(tmp_path / LEDGER_NAME)) == []

    @pytest.mark.parametrize(
        "torn", [b'{"event":"succeeded","id":"d","finger', b"\0\0\0\0\n"], ids=["mid-write", "zeros"]
    )
    def test_a_broken_last_line_is_ignored(self, tmp_path: Path, torn: bytes) -> None:
        """A crash mid-write (or zeros after a power cut) loses only the last line: the row stays in doubt."""
        write_ledger(tmp_path, SMALL_JOB, torn=torn)
        with imported(tmp_path) as store:
            assert store.row_state("d", FP["d"]) == "in_doubt"
            assert len(exported(store)) == len(SMALL_JOB)
        assert [e.kind for e in read_events(tmp_path / LEDGER_NAME)][-1] == "submitted"

    def test_invalid_middle_line_names_file_and_line(self, tmp_path: Path) -> None:
        """Corruption inside the ledger stops the import with the line to look at, and leaves no state."""
        write_ledger(tmp_path, [header(), "not json\n", submitted("a")])
        with pytest.raises(LedgerError, match=r"ledger\.jsonl: line 2: invalid ledger line"):
            import_ledger(tmp_path / LEDGER_NAME, tmp_path / STATE_NAME)
        assert not (tmp_path / STATE_NAME).exists()

    def test_event_missing_a_field_names_the_line(self, tmp_path: Path) -> None:
        """A known event without its fields is reported with its line number."""
        write_ledger(tmp_path, [header(), '{"event":"submitted","id":"a"}\n', "\n"])
        with pytest.raises(LedgerError, match="line 2: malformed 'submitted'"):
            import_ledger(tmp_path / LEDGER_NAME, tmp_path / STATE_NAME)

    def test_unknown_event_kinds_are_kept_not_applied(self, tmp_path: Path) -> None:
        """A line of a kind this version does not know is kept for the audit, and changes no state."""
        future = '{"event":"future","x":1}\n'
        write_ledger(tmp_path, [header(), future, submitted("a")])
        assert [e.kind for e in read_events(tmp_path / LEDGER_NAME)] == ["job", "submitted"]
        with imported(tmp_path) as store:
            assert exported(store)[1] == future.strip()
            assert store.counts()["in_doubt"] == 1


class TestAnotherJobsFile:
    def test_a_file_without_a_job_header_is_refused(self, tmp_path: Path) -> None:
        """A ledger.jsonl that does not start with a job header is not some job's state: nothing imported."""
        write_ledger(tmp_path, [line("run", run_id="r1"), submitted("a")])
        with pytest.raises(LedgerError, match="line 1 is not the job header"):
            open_job_state(tmp_path, job="demo")
        assert not (tmp_path / STATE_NAME).exists()

    def test_two_jobs_in_one_file_are_refused(self, tmp_path: Path) -> None:
        """Another job's ledger appended to this one (a second header) is refused, naming the line."""
        other = header(job="other", namespace="0e8f6b1a-9c2d-4e5f-8a7b-6c5d4e3f2a1b")
        write_ledger(tmp_path, [header(), submitted("a"), other, submitted("b")])
        with pytest.raises(LedgerError, match="line 3: a second job header"):
            import_ledger(tmp_path / LEDGER_NAME, tmp_path / STATE_NAME)
        assert not (tmp_path / STATE_NAME).exists()

    def test_the_ledgers_job_and_namespace_are_kept(self, tmp_path: Path) -> None:
        """Imported under a spec of another name, the state keeps the ledger's job and namespace, so the
        0.1 taskUUIDs are found again."""
        write_ledger(tmp_path, SMALL_JOB)
        with open_job_state(tmp_path, job="renamed") as store:
            assert (store.namespace, store.header()) == (NS, JobEvent(namespace=NS, job="demo", at=AT))
            assert [e.task_uuid for e in store.in_doubt()] == [task("d", 1)]
