"""`pipeline run/status/results` command-line behaviour that needs no provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main


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
        assert not (tmp_path / "out" / "ledger.jsonl").exists()

    def test_results_without_a_ledger(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`pipeline results` before any run: exit 2 saying so."""
        job = _spec(tmp_path, 'profile = "sandbox"')
        with pytest.raises(SystemExit) as info:
            main(["results", str(job)])
        assert info.value.code == 2
        assert "no ledger" in capsys.readouterr().err
