"""Shared bits of the engine benchmarks: a sandbox in its own process, synthetic rows, job specs."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pipeline.config.jobspec import JobSpec, load_job_spec
from pipeline.rows import ImageRequest, Row

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def sandbox_process(*args: str) -> Any:
    """`pipeline sandbox` in a separate process (so it does not share the engine's GIL); its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "pipeline", "sandbox", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{base}/sandbox/billing", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError("sandbox did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Batch:
    rows: list[Row]
    rejects: list[Any] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=dict)


def make_rows(n: int, tag: str) -> list[Row]:
    rows = []
    for i in range(n):
        prompt = f"benchmark {tag} product shot {i}"
        request = ImageRequest("openai:1@2", prompt, 1024, 1024, "low", "opaque", "JPG", 1)
        fingerprint = hashlib.sha256(prompt.encode()).hexdigest()[:32]
        rows.append(Row(i + 1, f"r{i}", fingerprint, request, {}))
    return rows


def make_spec(folder: Path, concurrency: int, timeout_s: float = 30) -> JobSpec:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.toml").write_text(
        f'name = "bench"\nmanifest = "m.csv"\noutput_dir = "out"\n'
        f"[limits]\nconcurrency = {concurrency}\nrequest_timeout_s = {timeout_s}\n"
        f'[output]\ndownload = false\nresults_interval_s = 3600\n[ledger]\nfsync = "group"\n'
    )
    return load_job_spec(folder / "job.toml")


def peak_rss_mb(pid: int | None = None) -> float:
    import resource

    who = resource.RUSAGE_SELF if pid is None else resource.RUSAGE_CHILDREN
    return resource.getrusage(who).ru_maxrss / 1024


os.environ.setdefault("PYTHONUNBUFFERED", "1")
