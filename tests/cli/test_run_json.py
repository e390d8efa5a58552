"""`pipeline run --json` says what this run did (``this_run``) beside the job's totals, and the human
summary says it too: what a cron log of a nightly run needs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.job_state import state_events
from helpers.paths import ROOT
from helpers.sandbox_jobs import KEY, cli, wait_for, write_job

from pipeline.sandbox import SandboxSettings, SandboxThread

NOTHING = {"submitted": 0, "succeeded": 0, "failed": 0, "images": 0, "spent_usd": 0}


@pytest.fixture
def sandbox() -> Iterator[Any]:
    with SandboxThread(SandboxSettings()) as sb:
        yield sb


def pipeline(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNWARE_API_KEY": KEY}
    cmd = [sys.executable, "-m", "pipeline", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def run_json(job: Path) -> dict[str, Any]:
    done = pipeline("run", str(job), "--json")
    assert done.returncode in (0, 1), done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def edit_prompt(folder: Path, old: str, new: str) -> None:
    manifest = folder / "prompts.csv"
    manifest.write_text(manifest.read_text().replace(old, new))


class TestThisRun:
    def test_a_nightly_run_reports_only_what_it_did(self, tmp_path: Path, sandbox: Any) -> None:
        """First run: 5 sent and paid. After one prompt is edited: 1 sent, 1 paid ($0.011), while the
        job's totals (the same as `pipeline status`) count all 5 rows and every dollar spent."""
        job = write_job(tmp_path, sandbox.url, 5)
        first = run_json(job)
        assert first["this_run"] == {
            "submitted": 5, "succeeded": 5, "failed": 0, "images": 5, "spent_usd": pytest.approx(0.055)
        }  # fmt: skip
        edit_prompt(tmp_path, "a 2 red bicycle", "a 2 blue bicycle")
        second = run_json(job)
        assert second["this_run"] == {
            "submitted": 1, "succeeded": 1, "failed": 0, "images": 1, "spent_usd": pytest.approx(0.011)
        }  # fmt: skip
        assert second["rows"] == {
            "total": 5, "rejected": 0, "succeeded": 5, "failed": 0, "pending": 0, "in_doubt": 0
        }  # fmt: skip
        assert second["spent_usd"] == pytest.approx(0.066)
        status = json.loads(pipeline("status", str(job), "--json").stdout)
        assert (status["rows"], status["spent_usd"]) == (second["rows"], second["spent_usd"])

    def test_a_run_with_nothing_to_do(self, tmp_path: Path, sandbox: Any) -> None:
        """A re-run over a finished job: this run sent nothing and spent nothing."""
        job = write_job(tmp_path, sandbox.url, 3)
        run_json(job)
        again = run_json(job)
        assert again["this_run"] == NOTHING
        assert again["rows"]["succeeded"] == 3

    def test_the_summary_line_says_it(self, tmp_path: Path, sandbox: Any) -> None:
        """Without --json the summary on stderr has a "this run" line."""
        job = write_job(tmp_path, sandbox.url, 4)
        run_json(job)
        edit_prompt(tmp_path, "a 1 red bicycle", "a 1 green bicycle")
        done = pipeline("run", str(job))
        assert done.returncode == 0, done.stderr
        assert "this run: 1 sent, 1 succeeded, 0 failed, 1 images, $0.0110" in done.stderr


class TestSecondInterrupt:
    @pytest.mark.slow
    def test_the_totals_hold_after_a_second_ctrl_c(self, tmp_path: Path) -> None:
        """Two SIGINTs cancel in-flight work at once: the JSON still gives the job's totals as its state
        has them, and this run's figures are the successes it committed."""
        with SandboxThread(SandboxSettings(seed=2, latency="uniform:50ms-4s")) as sb:
            job = write_job(tmp_path, sb.url, 16, concurrency=8, request_timeout_s=30)
            proc = cli(job, "--json")
            wait_for(lambda: sum(e.kind == "succeeded" for e in state_events(tmp_path / "out")) >= 2)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        summary = json.loads(stdout)
        events = state_events(tmp_path / "out")
        paid = [e for e in events if e.kind == "succeeded"]
        assert summary["this_run"]["succeeded"] == len(paid) >= 2
        assert summary["this_run"]["submitted"] == sum(e.kind == "submitted" for e in events)
        assert summary["this_run"]["spent_usd"] == pytest.approx(0.011 * len(paid))
        status = json.loads(pipeline("status", str(job), "--json").stdout)
        assert (summary["images"], summary["spent_usd"]) == (status["images"], status["spent_usd"])
        assert summary["rows"]["succeeded"] <= len(paid)


class TestBadKey:
    def test_a_refused_key_says_why_even_in_json_mode(self, tmp_path: Path) -> None:
        """--json with a key the provider refuses: exit 5, a JSON summary of nothing done, and the reason
        on stderr (the key checked for free: nothing was sent or billed)."""
        with SandboxThread(SandboxSettings(api_key="the-right-key")) as sb:
            job = write_job(tmp_path, sb.url, 5)
            done = pipeline("run", str(job), "--json")
            bill = sb.billing()
        assert done.returncode == 5
        summary = json.loads(done.stdout)
        assert summary["exit_code"] == 5
        assert summary["this_run"] == NOTHING
        assert "stopped by the provider: HTTP 401 invalidApiKey" in done.stderr
        assert (bill["requests"], bill["tasks"]) == (1, 0)
        assert KEY not in done.stderr + done.stdout
