"""End to end: `pipeline run` against the sandbox on loopback, then `pipeline report` agrees with the bill."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from helpers.paths import ROOT

from pipeline.sandbox import SandboxSettings, SandboxThread

pytestmark = pytest.mark.slow  # whole runs against the sandbox, then the report of each

QUALITIES = ("low", "medium", "high")
SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))


def _job(folder: Path, url: str, rows: int) -> Path:
    lines = ["id,prompt,quality,width,height,category"]
    for i in range(rows):
        w, h = SIZES[i % 3]
        lines.append(f"r{i},a studio photo of item {i},{QUALITIES[i % 3]},{w},{h},{['shoes', 'hats'][i % 2]}")
    lines.append("bad,a photo,ultra,1024,1024,hats")  # rejected: unknown quality
    (folder / "prompts.csv").write_text("\n".join(lines) + "\n")
    job = folder / "job.toml"
    job.write_text(
        'name = "report-e2e"\nmanifest = "prompts.csv"\noutput_dir = "out"\n'
        f'[provider]\nprofile = "sandbox"\nendpoint = "{url}"\n'
        '[defaults]\nmodel = "openai:1@2"\n'  # list-priced per image: the estimate is the bill
        "[limits]\nconcurrency = 6\nmax_attempts = 10\nrequest_timeout_s = 5\n"
        "[output]\ndownload = true\n"
    )
    return job


def _pipeline(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNWARE_API_KEY": "sk-report-e2e"}
    cmd = [sys.executable, "-m", "pipeline", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=100, check=False)


def _billing(base_url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{base_url}/sandbox/billing").json()
    return data


def test_report_matches_the_sandbox_bill_to_the_cent(tmp_path: Path) -> None:
    """A faulty run (429s, 500s, dropped connections) then a report: total spend == the bill, exactly."""
    faults = {"429": 0.1, "500": 0.1, "drop": 0.05}
    with SandboxThread(SandboxSettings(seed=7, faults=faults)) as sandbox:
        job = _job(tmp_path, sandbox.url, rows=24)
        ran = _pipeline("run", str(job), "-q")
        assert ran.returncode == 1, ran.stderr  # one row rejected
        bill = _billing(sandbox.base_url)
    reported = _pipeline(
        "report",
        str(job),
        "--by",
        "quality",
        "--by",
        "size",
        "--format",
        "json",
        "--html",
        str(tmp_path / "report.html"),
    )
    assert reported.returncode == 0, reported.stderr
    report = json.loads(reported.stdout)
    total = report["total"]

    assert Decimal(str(total["spend_usd"])) == Decimal(bill["total_usd_exact"]).quantize(Decimal("1e-6"))
    assert round(total["spend_usd"], 2) == round(bill["total_usd"], 2)
    assert total["images"] == bill["images"] == 24
    assert (total["rows_succeeded"], total["rows_failed"], total["rows_rejected"]) == (24, 0, 1)
    assert total["wasted_usd"] == 0.0 and bill["duplicate_tasks"] == 0
    assert total["estimate_usd"] == total["spend_usd"]  # the sandbox bills the profile's prices

    by_key = {(g["quality"], g["size"]): g for g in report["groups"]}
    assert Decimal(str(by_key[("high", "1024x1536")]["spend_usd"])) == 8 * Decimal("0.052")
    assert Decimal(str(by_key[("low", "1024x1024")]["spend_usd"])) == 8 * Decimal("0.005")

    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 24  # every downloaded image as a thumbnail
    assert pl.read_parquet(tmp_path / "out" / "results.parquet")["local_path"].null_count() == 0


def test_demo_job_report_in_one_command(tmp_path: Path) -> None:
    """After the demo run, `pipeline report jobs/demo.toml --html ...` reports it (copy of jobs/ in tmp)."""
    (tmp_path / "jobs").mkdir()
    shutil.copy(ROOT / "jobs" / "demo.toml", tmp_path / "jobs" / "demo.toml")
    shutil.copytree(ROOT / "jobs" / "demo", tmp_path / "jobs" / "demo")
    spec = str(tmp_path / "jobs" / "demo.toml")
    ran = _pipeline("run", spec, "-q")
    assert ran.returncode == 0, ran.stderr
    page = tmp_path / "output" / "demo" / "report.html"
    table = _pipeline("report", spec, "--html", str(page))
    assert table.returncode == 0, table.stderr
    assert "(total)" not in table.stdout and "$" in table.stdout
    report = json.loads(_pipeline("report", spec, "--format", "json").stdout)
    results = pl.read_parquet(tmp_path / "output" / "demo" / "results.parquet")
    assert report["total"]["images"] == results.height
    assert Decimal(str(report["total"]["spend_usd"])) == sum(Decimal(str(c)) for c in results["cost_usd"])
    assert page.read_text().count("data:image/jpeg;base64,") == results.height
