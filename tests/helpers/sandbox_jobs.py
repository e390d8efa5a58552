"""A job pointed at a sandbox, ``pipeline run`` on it in a subprocess, and the sandbox's bill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from helpers.paths import ROOT

KEY = "sk-sandbox-acceptance-KEY-42"


def write_job(folder: Path, url: str, rows: int, *, prompt: str = "a {i} red bicycle", **limits: Any) -> Path:
    """A job spec and a CSV manifest of ``rows`` rows in ``folder``; [provider] endpoint = ``url``."""
    lines = ["id,prompt,sku"] + [f"r{i},{prompt.format(i=i)},SKU-{i}" for i in range(rows)]
    (folder / "prompts.csv").write_text("\n".join(lines) + "\n")
    return rewrite_job(folder, url, **limits)


def rewrite_job(folder: Path, url: str, *, download: bool = False, **limits: Any) -> Path:
    lim = {"concurrency": 8, "max_attempts": 8, "request_timeout_s": 2.0, **limits}
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in lim.items())
    job = folder / "job.toml"
    job.write_text(
        'name = "acceptance"\nmanifest = "prompts.csv"\noutput_dir = "out"\n'
        f'[provider]\nprofile = "sandbox"\nendpoint = "{url}"\n'
        f"[limits]\n{body}\n"
        f"[output]\ndownload = {json.dumps(download)}\nresults_interval_s = 0.3\n"
        '[defaults]\nmodel = "openai:1@2"\n'  # $0.011 a row: the money tests count on it
    )
    return job


def billing(sandbox: Any) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{sandbox.base_url}/sandbox/billing").json()
    return data


def assert_billed_once(sandbox: Any, rows: int) -> None:
    bill = billing(sandbox)
    assert bill["tasks"] == rows
    assert bill["duplicate_tasks"] == 0
    assert bill["duplicate_prompts"] == 0


def cli(job: Path, *args: str, key: str = KEY) -> subprocess.Popen[str]:
    """``pipeline run JOB -q ARGS`` started in a subprocess (to be signalled or killed)."""
    env = {**os.environ, "RUNWARE_API_KEY": key}
    cmd = [sys.executable, "-m", "pipeline", "run", str(job), "-q", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition: Any, timeout: float = 30.0, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(poll)
