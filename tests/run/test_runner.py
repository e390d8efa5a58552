"""A whole run in-process (scripted Runware): results table, rejects, lock, JSON summary shape."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from helpers.engine_runs import Batch, make_row, make_spec
from helpers.fake_runware import FakeRunware
from helpers.job_state import state_events
from helpers.paths import V01_JOB
from rich.console import Console

from pipeline.config.jobspec import load_job_spec
from pipeline.errors import LockHeldError, ManifestError
from pipeline.run.runner import Provider, run_job
from pipeline.sandbox import SandboxSettings, SandboxThread
from pipeline.state.ledger_file import read_events as state_events_of_ledger
from pipeline.state.lock import job_lock

KEY = "sk-runner-SECRET"


@dataclass
class Reject:
    row_number: int
    id: str | None
    reason: str


class TestRunJob:
    @pytest.mark.anyio
    async def test_writes_results_and_rejects(self, tmp_path: Path) -> None:
        """results.parquet has one line per image with passthrough columns; rejects.parquet the rejects."""
        spec, fake = make_spec(tmp_path), FakeRunware()
        rows = [make_row(i) for i in range(6)]
        batches = iter([Batch(rows[:3], [Reject(4, "bad", "empty prompt")]), Batch(rows[3:])])
        outcome = await run_job(
            spec,
            Provider("http://fake/v1", KEY),
            batches=batches,
            transport=fake.transport(),
            handle_signals=False,
        )
        assert outcome.summary() == {
            "rows": {"total": 7, "rejected": 1, "succeeded": 6, "failed": 0, "pending": 0, "in_doubt": 0},
            "images": 6,
            "spent_usd": pytest.approx(0.066),
            "exit_code": 1,
            "this_run": {"submitted": 6, "succeeded": 6, "failed": 0, "images": 6, "spent_usd": 0.066},
            "stopped_models": [],
        }
        results = pl.read_parquet(spec.out_dir / "results.parquet")
        assert sorted(results["id"].to_list()) == [f"row{i}" for i in range(6)]
        assert set(results["status"]) == {"succeeded"}
        assert results["sku"].to_list()[0].startswith("SKU-")
        assert results["cost_usd"].sum() == pytest.approx(0.066)
        rejects = pl.read_parquet(spec.out_dir / "rejects.parquet")
        assert rejects.to_dicts() == [{"row_number": 4, "id": "bad", "reason": "empty prompt"}]
        for path in spec.out_dir.rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes()

    @pytest.mark.anyio
    async def test_second_run_of_a_locked_job_is_refused(self, tmp_path: Path) -> None:
        """While another run holds the lock, run_job raises LockHeldError (exit 4) and sends nothing."""
        spec, fake = make_spec(tmp_path), FakeRunware()
        with job_lock(spec.out_dir, spec.name), pytest.raises(LockHeldError) as info:
            await run_job(
                spec,
                Provider("http://fake/v1", KEY),
                batches=iter([Batch([make_row(0)])]),
                transport=fake.transport(),
                handle_signals=False,
            )
        assert info.value.exit_code == 4
        assert fake.requests == []


class TestErrors:
    @pytest.mark.anyio
    async def test_a_bad_later_batch_is_reported_as_itself(self, tmp_path: Path) -> None:
        """A manifest error in a later batch surfaces as ManifestError (exit 2), not an exception group;
        the results table is still written."""

        def batches() -> Iterator[Batch]:
            yield Batch([make_row(0)])
            raise ManifestError(tmp_path / "m.csv", "unreadable after row 1")

        spec, fake = make_spec(tmp_path), FakeRunware()
        with pytest.raises(ManifestError) as info:
            await run_job(
                spec,
                Provider("http://fake/v1", KEY),
                batches=batches(),
                transport=fake.transport(),
                handle_signals=False,
            )
        assert info.value.exit_code == 2
        assert "unreadable after row 1" in str(info.value)
        assert (spec.out_dir / "results.parquet").exists()  # what was done before the error is kept


FIXTURE_01 = V01_JOB


class TestUpgradeFrom01:
    @pytest.mark.anyio
    async def test_a_01_job_is_imported_once_and_resumed(self, tmp_path: Path) -> None:
        """The first run of a job the 0.1 code ran: its ledger is imported (with progress) and kept as it
        was; done rows are not sent again, its tasks in doubt are settled with their own taskUUIDs, and
        the money adds up to 0.1's spend plus this run's."""
        shutil.copytree(FIXTURE_01, tmp_path / "job")
        ledger = tmp_path / "job" / "out" / "ledger.jsonl"
        before = ledger.read_bytes()
        done_01 = {e.id for e in state_events_of_ledger(ledger) if e.kind == "succeeded"}
        expected = json.loads((FIXTURE_01 / "expected.json").read_text())
        in_doubt_01 = {row["id"] for row in expected["rows"] if row["state"] == "in_doubt"}
        progress = io.StringIO()
        with SandboxThread(SandboxSettings()) as sb:
            job = tmp_path / "job" / "job.toml"
            job.write_text(job.read_text().replace("http://127.0.0.1:18731/v1", sb.url))
            outcome = await run_job(
                load_job_spec(job),
                Provider(sb.url, KEY),
                console=Console(file=progress, width=200),
                handle_signals=False,
            )
            bill = sb.billing()
        assert "importing the 0.1 ledger.jsonl into state.db" in progress.getvalue()
        assert ledger.read_bytes() == before
        run = outcome.this_run
        assert (bill["tasks"], bill["duplicate_tasks"]) == (run.succeeded, 0)
        assert outcome.spent_usd == Decimal("0.506") + run.spent_usd
        events = state_events(tmp_path / "job" / "out")
        assert [e.kind for e in events[:165]] == [e.kind for e in state_events_of_ledger(ledger)]
        resent = {e.id for e in events[165:] if e.kind == "submitted"}
        settled = {e.id for e in events[165:] if e.kind == "succeeded"} - resent
        assert resent and not resent & done_01  # done rows are never sent again
        assert settled == in_doubt_01  # settled with their 0.1 taskUUIDs, no new task
        assert run.submitted == sum(e.kind == "submitted" for e in events[165:])
