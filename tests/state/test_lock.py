"""The job lock: two runs of one job at once are refused; a killed run never leaves it stuck."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import LockHeldError
from pipeline.state.lock import JobLock, job_lock

HOLDER = """
import sys, time
from pipeline.state.lock import job_lock
with job_lock(sys.argv[1], "demo"):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of tmp_path/out."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


class TestJobLock:
    def test_second_run_is_refused_with_exit_4(self, tmp_path: Path, holder: subprocess.Popen[str]) -> None:
        """A run while another process runs the job fails with 'already running (pid N)', exit 4."""
        with pytest.raises(LockHeldError) as info, job_lock(tmp_path / "out", "demo"):
            pass
        assert info.value.exit_code == 4
        assert f"job demo is already running (pid {holder.pid}" in str(info.value)

    def test_lock_is_free_after_the_holder_is_killed(
        self, tmp_path: Path, holder: subprocess.Popen[str]
    ) -> None:
        """SIGKILL of the running process frees the job for the next run."""
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with job_lock(tmp_path / "out", "demo") as lock:
            assert lock.held

    def test_same_process_cannot_take_it_twice(self, tmp_path: Path) -> None:
        """Two runs in one process are refused as well, and release lets the next one in."""
        with job_lock(tmp_path, "demo"), pytest.raises(LockHeldError):
            JobLock(tmp_path, "demo").acquire()
        with job_lock(tmp_path, "demo") as lock:
            assert lock.held
        assert not lock.held

    def test_creates_the_output_dir(self, tmp_path: Path) -> None:
        """The first run of a job may lock an output dir that does not exist yet."""
        with job_lock(tmp_path / "new" / "dir", "demo"):
            assert (tmp_path / "new" / "dir" / ".lock").exists()
