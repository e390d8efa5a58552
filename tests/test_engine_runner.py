"""A whole run in-process (scripted Runware): results table, rejects, lock, JSON summary shape."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from engine_fake import FakeRunware
from test_engine import Batch, make_row, make_spec

from pipeline.errors import LockHeldError, ManifestError
from pipeline.lock import job_lock
from pipeline.runner import Provider, run_job

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
