"""A disk that fills up mid-run: the run stops with a clear error and a non-zero exit, keeps everything it
committed, and once space is freed the next run finishes with every row paid exactly once. And a run whose
results table could not be written never exits 0.

The output folder is a small tmpfs (``mount`` needs root, as in CI; elsewhere these tests are skipped).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from helpers.job_state import state_events
from helpers.sandbox_jobs import assert_billed_once, billing, cli, rewrite_job, write_job

from pipeline.sandbox import SandboxSettings, SandboxThread

ROWS = 150


@pytest.fixture
def sandbox() -> Iterator[Any]:
    with SandboxThread(SandboxSettings(latency="20ms")) as sb:
        yield sb


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[None]:
    """``folder`` as a tmpfs of ``size`` (say ``"8m"``) for the duration."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command: cannot make a small file system for output_dir")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs as output_dir (needs root, as in CI): {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def resize(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def fill(folder: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free in ``folder``'s file system."""
    stat = os.statvfs(folder)
    filler = folder / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def succeeded(out: Path) -> dict[str, str]:
    """task UUID -> row id of every success the job's state holds."""
    return {e.task_uuid: e.id for e in state_events(out) if e.kind == "succeeded"}


def assert_stopped_cleanly(proc: subprocess.Popen[str], *reasons: str) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert any(reason in err for reason in reasons), err


@pytest.mark.slow  # whole runs into a tmpfs that fills up, then again once it is freed
class TestDiskFull:
    def test_the_state_cannot_grow(self, tmp_path: Path, sandbox: Any) -> None:
        """The state database finds no room: exit 1 naming the file and the reason; what it committed is
        kept; with the space back, the next run sends only the rest and every row is paid once."""
        job = write_job(tmp_path, sandbox.url, ROWS, concurrency=8)
        out = tmp_path / "out"
        with tmpfs(out, "8m"):
            filler = fill(out, leave=512 * 1024)
            assert_stopped_cleanly(cli(job), "database or disk is full")
            paid_then = billing(sandbox)["tasks"]
            assert 0 < paid_then < ROWS
            filler.unlink()
            kept = succeeded(out)
            assert kept  # what was committed before the disk filled
            rerun = cli(job, "--json")
            stdout, stderr = rerun.communicate(timeout=120)
            assert rerun.returncode == 0, stderr
            summary = json.loads(stdout)
            assert summary["rows"]["succeeded"] == ROWS
            assert_billed_once(sandbox, ROWS)
            assert kept.items() <= succeeded(out).items()  # nothing committed was lost
            assert not sent_by_last_run(out) & set(kept.values())  # no success was sent again
            assert pl.read_parquet(out / "results.parquet")["id"].n_unique() == ROWS

    def test_the_images_cannot_be_written(self, tmp_path: Path, sandbox: Any) -> None:
        """Downloads fill the disk: the run stops (not one image after another failing), and once the file
        system is made bigger the next run fetches what is missing and generates only the rest."""
        job = write_job(tmp_path, sandbox.url, ROWS, concurrency=8)
        rewrite_job(tmp_path, sandbox.url, download=True, concurrency=8)
        out = tmp_path / "out"
        with tmpfs(out, "2m"):
            assert_stopped_cleanly(cli(job), "no space left on the device", "database or disk is full")
            assert 0 < billing(sandbox)["tasks"] < ROWS
            resize(out, "64m")
            rerun = cli(job, "--json")
            stdout, stderr = rerun.communicate(timeout=120)
            assert rerun.returncode == 0, stderr
            assert json.loads(stdout)["rows"]["succeeded"] == ROWS
            assert_billed_once(sandbox, ROWS)
            table = pl.read_parquet(out / "results.parquet")
            assert table["local_path"].null_count() == 0
            assert all(Path(p).is_file() for p in table["local_path"])


def sent_by_last_run(out: Path) -> set[str]:
    """Ids of the rows the last run sent a task for."""
    events = state_events(out)
    last = [e.run_id for e in events if e.kind == "run"][-1]
    return {e.id for e in events if e.kind == "submitted" and e.run_id == last}


class TestResultsTable:
    def test_a_run_without_its_table_does_not_exit_0(self, tmp_path: Path, sandbox: Any) -> None:
        """The final results table cannot be written (here a folder is in its way): every row succeeds,
        yet the run exits 1 saying why, so cron does not report success for a run with no table."""
        job = write_job(tmp_path, sandbox.url, 6)
        (tmp_path / "out" / "results.parquet").mkdir(parents=True)
        proc = cli(job)
        assert_stopped_cleanly(proc, "results.parquet")
        assert len(succeeded(tmp_path / "out")) == 6
        assert_billed_once(sandbox, 6)
