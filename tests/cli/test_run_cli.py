"""`pipeline run/status/results` command-line behaviour that needs no provider."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from helpers.job_state import state_events
from helpers.paths import ROOT

from pipeline.cli import main
from pipeline.state import STATE_NAME


def _spec(tmp_path: Path, provider: str) -> Path:
    (tmp_path / "m.csv").write_text("id,prompt\na,a red bicycle\n")
    job = tmp_path / "job.toml"
    job.write_text(f'name = "k"\nmanifest = "m.csv"\noutput_dir = "out"\n[provider]\n{provider}\n')
    return job


class TestApiKey:
    def test_missing_key_is_a_clear_exit_2(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No key in the environment and none in the profile: exit 2 naming the variable, nothing sent."""
        monkeypatch.delenv("PIPELINE_TEST_NO_SUCH_KEY", raising=False)
        job = _spec(tmp_path, 'profile = "runware"\napi_key_env = "PIPELINE_TEST_NO_SUCH_KEY"')
        with pytest.raises(SystemExit) as info:
            main(["run", str(job)])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "PIPELINE_TEST_NO_SUCH_KEY" in err
        assert "Traceback" not in err
        assert not (tmp_path / "out" / STATE_NAME).exists()

    def test_results_without_a_state(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`pipeline results` before any run: exit 2 saying so."""
        job = _spec(tmp_path, 'profile = "sandbox"')
        with pytest.raises(SystemExit) as info:
            main(["results", str(job)])
        assert info.value.code == 2
        assert "run the job first" in capsys.readouterr().err


@pytest.mark.slow  # the demo job, twice, in subprocesses
class TestDemo:
    def test_demo_runs_on_the_embedded_sandbox_and_rerun_sends_nothing(self, tmp_path: Path) -> None:
        """`pipeline run jobs/demo.toml` (copied): images and results; a second run sends no request."""
        root = ROOT
        shutil.copytree(root / "jobs", tmp_path / "jobs")
        job = tmp_path / "jobs" / "demo.toml"
        env = {k: v for k, v in os.environ.items() if k != "RUNWARE_API_KEY"}
        cmd = [sys.executable, "-m", "pipeline", "run", str(job), "--json"]
        first = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        summary = json.loads(first.stdout)
        assert summary["rows"]["succeeded"] == summary["rows"]["total"] > 0
        out = tmp_path / "output" / "demo"
        table = pl.read_parquet(out / "results.parquet")
        assert len(table) == summary["images"]
        assert all(Path(p).is_file() for p in table["local_path"])
        before = len(state_events(out))
        second = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        again = json.loads(second.stdout)
        assert again["exit_code"] == 0
        assert again["this_run"] == {"submitted": 0, "succeeded": 0, "failed": 0, "images": 0, "spent_usd": 0}
        assert [e.kind for e in state_events(out)[before:]] == ["run"]
