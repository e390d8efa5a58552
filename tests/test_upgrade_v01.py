"""Upgrading from 0.1: a job whose state the 0.1 code wrote plans, and reports its status, as 0.1 did.

``tests/data/v01_job`` was written by four real runs of the 0.1 code (see its make_fixture.md);
``expected.json`` holds what the 0.1 code said of it. Nothing there may be regenerated with newer code.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers.paths import V01_JOB

from pipeline.cli import main
from pipeline.config.jobspec import load_job_spec
from pipeline.output.plan.build import build_plan

FIXTURE = V01_JOB
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A copy of the 0.1 job (the fixture itself is never written to)."""
    folder = tmp_path / "v01_job"
    shutil.copytree(FIXTURE, folder)
    return folder / "job.toml"


class TestUpgradeFrom01:
    def test_a_finished_01_catalog_plans_as_it_did(self, job: Path) -> None:
        """Done rows stay done: the same new/changed/done/failed/in-doubt counts as 0.1's plan."""
        plan = build_plan(load_job_spec(job), dt.date(2026, 11, 1))
        counts = {name: getattr(plan.rows, name) for name in EXPECTED["plan"]["rows"]}
        assert counts == EXPECTED["plan"]["rows"]
        assert plan.rows.changed == 0
        assert plan.spent_usd == Decimal(EXPECTED["spent_usd"])  # exact: "0.506"

    def test_the_same_rows_cost_the_same(self, job: Path) -> None:
        """The plan's estimate for the rows left is 0.1's, line by line."""
        plan = build_plan(load_job_spec(job), dt.date(2026, 11, 1))
        lines = {(c.model, c.quality, c.size): (c.rows, c.images, str(c.usd)) for c in plan.cost}
        expected = {
            (e["model"], e["quality"], e["size"]): (e["rows"], e["images"], str(e["usd"]))
            for e in EXPECTED["plan"]["estimate"]
        }
        assert lines == expected

    def test_status_reads_the_01_state_as_01_did(self, job: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`pipeline status --json`: every row state, image and dollar as the 0.1 code reported them."""
        with pytest.raises(SystemExit) as exited:
            main(["status", str(job), "--json"])
        assert exited.value.code == EXPECTED["status_exit_code"]
        status = json.loads(capsys.readouterr().out)
        assert status["rows"] == EXPECTED["status"]["rows"]
        assert (status["images"], status["spent_usd"]) == (34, 0.506)
