"""`pipeline events`: the job's append-only event log as JSON Lines, for an audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.paths import V01_JOB

from pipeline.cli import main
from pipeline.state import STATE_NAME, Store
from pipeline.state.events import RunEvent

FIXTURE = V01_JOB


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A copy of the real 0.1 job (imported on first use)."""
    shutil.copytree(FIXTURE, tmp_path / "v01_job")
    return tmp_path / "v01_job" / "job.toml"


def events_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["events", *argv])
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_an_imported_job_exports_its_01_ledger_byte_for_byte(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o FILE: the lines the 0.1 ledger held, exactly."""
    audit = tmp_path / "audit.jsonl"
    code, _, err = events_cli(capsys, str(job), "-o", str(audit))
    assert code == 0 and "wrote 165 events" in err
    assert audit.read_bytes() == (job.parent / "out" / "ledger.jsonl").read_bytes()


def test_later_events_follow_in_order_on_stdout(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without -o the events go to stdout: the imported ones, then what was recorded since."""
    events_cli(capsys, str(job))  # imports
    with Store.open(job.parent / "out" / STATE_NAME) as store:
        store.record(RunEvent(run_id="after-import"))
    code, out, _ = events_cli(capsys, str(job))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 166
    assert [json.loads(line)["event"] for line in (lines[0], lines[-1])] == ["job", "run"]
    assert json.loads(lines[-1])["run_id"] == "after-import"


def test_json_summary_with_a_file(job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json -o FILE: one JSON object on stdout saying how many events were written where."""
    audit = tmp_path / "audit.jsonl"
    _, out, _ = events_cli(capsys, str(job), "--json", "-o", str(audit))
    assert json.loads(out) == {"events": 165, "output": str(audit)}


def test_a_job_that_never_ran_has_no_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No state: a usage error (exit 2), and no state is created."""
    (tmp_path / "m.csv").write_text("id,prompt\na,p\n")
    (tmp_path / "job.toml").write_text('name = "x"\nmanifest = "m.csv"\noutput_dir = "out"\n')
    code, _, err = events_cli(capsys, str(tmp_path / "job.toml"))
    assert code == 2 and "no job state yet" in err
    assert not (tmp_path / "out" / STATE_NAME).exists()
