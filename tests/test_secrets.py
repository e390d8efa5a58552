"""The API key never appears in logs, errors, results, the job's state, its audit export or reports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.paths import ROOT

from pipeline.run.runner import Provider
from pipeline.sandbox import SandboxSettings, SandboxThread
from pipeline.state import STATE_NAME, Store, export_events

KEY = "sk-live-NEVER-PRINT-ME-7f3a9c"


@pytest.fixture
def sandbox() -> Iterator[SandboxThread]:
    """A sandbox that accepts only KEY and drops/garbles some answers, so error paths are exercised."""
    settings = SandboxSettings(api_key=KEY, seed=3, faults={"500": 0.2, "malformed": 0.1})
    with SandboxThread(settings) as sb:
        yield sb


def write_job(folder: Path, url: str) -> Path:
    rows = ["id,prompt,category"] + [f"s{i},a key-safety test image {i},tests" for i in range(12)]
    (folder / "prompts.csv").write_text("\n".join(rows) + "\n")
    job = folder / "job.toml"
    job.write_text(
        'name = "secrets"\nmanifest = "prompts.csv"\noutput_dir = "out"\n'
        f'[provider]\nprofile = "runware"\nendpoint = "{url}"\n'
        "[limits]\nconcurrency = 4\nmax_attempts = 8\nrequest_timeout_s = 5\n"
        '[output]\ndownload = true\nformats = ["parquet", "csv"]\n'
    )
    return job


def pipeline(*args: str, key: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNWARE_API_KEY": key}
    cmd = [sys.executable, "-m", "pipeline", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False)


def files_containing(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow  # a whole verbose run, then every command over its output
def test_key_is_in_no_output_of_a_verbose_run(tmp_path: Path, sandbox: SandboxThread) -> None:
    """Run, status, results and report at -vv: the key is in no stream and no file they write (the
    state database and its audit export included)."""
    job = write_job(tmp_path, sandbox.url)
    run = pipeline("run", str(job), "-vv", key=KEY)
    assert run.returncode == 0, run.stderr[-2000:]
    outputs = [run]
    for args in (("status", str(job), "-vv"), ("results", str(job), "-vv")):
        outputs.append(pipeline(*args, key=KEY))
    report = pipeline(
        "report", str(job), "--by", "category", "--html", str(tmp_path / "out" / "r.html"), key=KEY
    )
    assert report.returncode == 0, report.stderr[-2000:]
    outputs.append(report)

    assert (tmp_path / "out" / "results.parquet").is_file()
    with Store.open(tmp_path / "out" / STATE_NAME) as store:
        assert export_events(store, tmp_path / "out" / "audit.jsonl") > 12
    for proc in outputs:
        assert KEY not in proc.stdout and KEY not in proc.stderr
    assert files_containing(tmp_path / "out", KEY.encode()) == []


def test_a_wrong_key_is_refused_without_echoing_it(tmp_path: Path, sandbox: SandboxThread) -> None:
    """A rejected key stops the run with exit 5; neither key is printed or written."""
    wrong = "sk-live-WRONG-KEY-also-secret-1234"
    job = write_job(tmp_path, sandbox.url)
    run = pipeline("run", str(job), "-vv", key=wrong)
    assert run.returncode == 5, run.stderr[-2000:]
    assert "invalid" in run.stderr.lower() or "401" in run.stderr
    assert "Traceback" not in run.stderr
    for secret in (wrong, KEY):
        assert secret not in run.stdout and secret not in run.stderr
        assert files_containing(tmp_path / "out", secret.encode()) == []


def test_provider_repr_hides_the_key() -> None:
    """A Provider printed in a log line or a traceback does not show the key."""
    assert KEY not in repr(Provider("http://127.0.0.1:1/v1", KEY))
