"""Peak memory of `pipeline run` on a big manifest (default 100,000 rows), sandbox in its own process.

    uv run python benchmarks/engine_memory.py [--rows 100000] [--concurrency 64]

Reports the run's peak RSS (ru_maxrss of the child) and, for scale, the peak of a run over a tenth of
the rows: memory should stay flat in the manifest's size (the ledger state grows by a few hundred bytes a
row; rows themselves are streamed).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine_common import ROOT, sandbox_process


def write_job(folder: Path, url: str, rows: int, concurrency: int) -> Path:
    with (folder / "prompts.csv").open("w") as f:
        f.write("id,prompt,sku,category\n")
        for i in range(rows):
            f.write(f"p{i},catalog shot of product {i} on a white background,SKU-{i},cat{i % 50}\n")
    job = folder / "job.toml"
    job.write_text(
        'name = "mem"\nmanifest = "prompts.csv"\noutput_dir = "out"\n'
        f'[provider]\nprofile = "sandbox"\nendpoint = "{url}"\n'
        f'[defaults]\nquality = "low"\n[limits]\nconcurrency = {concurrency}\n'
        "[output]\ndownload = false\nresults_interval_s = 60\n"
    )
    return job


def run_and_measure(job: Path) -> tuple[float, float, int]:
    """(peak RSS MB, seconds, exit code) of one `pipeline run` child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    env = {**os.environ, "RUNWARE_API_KEY": "bench"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(job), "-q"], cwd=ROOT, env=env, check=False
    )
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(peak, before) / 1024, elapsed, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with sandbox_process() as base, tempfile.TemporaryDirectory() as tmp:
        small_dir, big_dir = Path(tmp) / "small", Path(tmp) / "big"
        small_dir.mkdir()
        big_dir.mkdir()
        small = write_job(small_dir, f"{base}/v1", args.rows // 10, args.concurrency)
        big = write_job(big_dir, f"{base}/v1", args.rows, args.concurrency)
        # ru_maxrss of children is the max over all children so far: measure the small run first
        small_peak, small_s, small_rc = run_and_measure(small)
        big_peak, big_s, big_rc = run_and_measure(big)
        print(f"{args.rows // 10:>7} rows: peak RSS {small_peak:7.1f} MB, {small_s:6.1f} s, exit {small_rc}")
        print(f"{args.rows:>7} rows: peak RSS {big_peak:7.1f} MB, {big_s:6.1f} s, exit {big_rc}")
        print(f"rows x10 -> memory x{big_peak / small_peak:.2f}")


if __name__ == "__main__":
    main()
