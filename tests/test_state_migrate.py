"""Importing a real 0.1 ledger (tests/data/v01_job, written by the 0.1 code): every state, attempt and
dollar survives, the ledger is untouched, and a killed import starts over cleanly."""

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

from pipeline.events import SubmittedEvent
from pipeline.ledger import LEDGER_NAME, LedgerError, load_state, read_events
from pipeline.state import STATE_NAME, Store, import_ledger, open_job_state
from pipeline.state.migrate import IMPORTING_SUFFIX

FIXTURE = Path(__file__).parent / "data" / "v01_job"
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
        last: dict[tuple[str, str], SubmittedEvent] = {}
        for event in read_events(out / LEDGER_NAME):
            if isinstance(event, SubmittedEvent):
                last[(event.id, event.fingerprint)] = event
        ids = sorted({id for id, _ in last})
        assert sorted(store.last_submitted(ids), key=str) == sorted(last.values(), key=str)
        assert len(store.last_submitted(["lamp-brass-night"])) == 2
        assert store.duplicate_payments() == []

    def test_export_gives_back_the_ledger(self, store: Store, out: Path) -> None:
        """The audit export is the ledger, line for line (equal JSON objects, in order; even the bytes)."""
        ledger_lines = (out / LEDGER_NAME).read_text(encoding="utf-8").splitlines()
        lines = exported(store)
        assert [json.loads(line) for line in lines] == [json.loads(line) for line in ledger_lines]
        assert lines == ledger_lines
        assert Counter(json.loads(line)["event"] for line in lines) == EXPECTED["events"]

    def test_the_store_folds_like_load_state(self, store: Store, out: Path) -> None:
        """What the 0.1 fold of the file answers, the store answers."""
        state = load_state(out / LEDGER_NAME)
        assert store.counts() == state.counts()
        assert store.spent_usd() == state.spent_usd
        in_doubt = store.in_doubt()
        assert sorted(in_doubt, key=str) == sorted(state.in_doubt, key=str)  # the whole submitted events
        assert [e.at for e in in_doubt] == sorted(e.at for e in in_doubt)  # oldest first
        assert store.uploads() == state.uploads
        assert store.undownloaded() == list(state.undownloaded.values())
        assert store.attempts() == state.attempts
        assert store.run_ids() == state.run_ids


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
