"""Upgrading from 0.1 through the commands: the first `status`, `plan`, `results` or `report` of a job
whose output_dir holds a 0.1 ``ledger.jsonl`` imports it once, keeps it byte for byte, and answers.

``tests/data/v01_job`` was written by the 0.1 code; ``expected.json`` holds what 0.1 said of it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers.paths import V01_JOB

import pipeline.output.status
from pipeline.cli import main
from pipeline.state import STATE_NAME, Store

FIXTURE = V01_JOB
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())
COMMANDS = {
    "status": ["status", "{job}", "--json"],
    "plan": ["plan", "{job}", "--json"],
    "results": ["results", "{job}", "--json"],
    "report": ["report", "{job}", "--format", "json"],
}


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A copy of the 0.1 job (the fixture itself is never written to)."""
    shutil.copytree(FIXTURE, tmp_path / "v01_job")
    return tmp_path / "v01_job" / "job.toml"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pipeline_cli(capsys: pytest.CaptureFixture[str], command: str, job: Path) -> tuple[int, str, str]:
    argv = [arg.format(job=job) for arg in COMMANDS[command]]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_first_use_imports_once_and_keeps_the_ledger(
    job: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """state.db appears, the ledger's bytes stay, and a second command does not import again."""
    out = job.parent / "out"
    ledger = digest(out / "ledger.jsonl")
    code, stdout, _ = pipeline_cli(capsys, command, job)
    assert code in (0, 1), stdout  # plan exits 1: the 0.1 manifest has rejected rows
    assert (out / STATE_NAME).exists() and digest(out / "ledger.jsonl") == ledger
    json.loads(stdout)
    state = (out / STATE_NAME).stat().st_ino
    pipeline_cli(capsys, "status", job)
    assert (out / STATE_NAME).stat().st_ino == state  # opened, not replaced by a second import


def test_every_fact_survives_a_status(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After `pipeline status --json`: states, attempts, in-doubt tasks, uploads and "0.506" as 0.1 had."""
    _, stdout, _ = pipeline_cli(capsys, "status", job)
    assert json.loads(stdout)["rows"] == EXPECTED["status"]["rows"]
    with Store.open(job.parent / "out" / STATE_NAME) as store:
        assert store.spent_usd() == Decimal(EXPECTED["spent_usd"])
        assert store.counts() == EXPECTED["counts"]
        assert store.attempts() == EXPECTED["attempts"]
        assert [e.task_uuid for e in store.in_doubt()] == EXPECTED["in_doubt_task_uuids"]
        assert store.uploads() == EXPECTED["uploads"]
        assert store.run_ids() == EXPECTED["run_ids"]
        for row in EXPECTED["ledger_rows"]:
            found = store.row(row["id"], row["fingerprint"])
            assert found is not None
            assert (found.state, found.attempts, found.images) == (
                row["state"],
                row["submitted"],
                row["images"],
            )


def test_the_report_after_import_matches_01(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The report reads the imported state: the 0.1 job's spend, to the cent."""
    _, stdout, _ = pipeline_cli(capsys, "report", job)
    assert Decimal(str(json.loads(stdout)["total"]["spend_usd"])) == Decimal(EXPECTED["spent_usd"])


def test_a_big_ledger_shows_progress(
    job: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import of a big ledger says how far it is, on stderr (stdout keeps its JSON)."""
    monkeypatch.setattr(pipeline.output.status, "_SHOW_PROGRESS_BYTES", 0)
    _, stdout, err = pipeline_cli(capsys, "status", job)
    assert "importing the 0.1 ledger into state.db: 100%" in err
    json.loads(stdout)
