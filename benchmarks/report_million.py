"""Time and peak memory of `pipeline report` over a 1,000,000-row results table (and its ledger).

    uv run python benchmarks/report_million.py [--rows 1000000] [--no-ledger] [--repeat 3]

Writes a synthetic output dir under benchmarks/.data/report-<rows>/ (results.parquet in the documented
schema with a passthrough column, rejects.parquet, and a ledger.jsonl with a submitted and a succeeded or
failed event per row plus 0.1% duplicate charges), then runs the report command in a subprocess, several
ways, and prints wall time and peak RSS of each next to a baseline measured in the same run (the CLI's
start-up: `pipeline report --help`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / ".data"
PRICES = (0.005, 0.011, 0.015, 0.036, 0.052)


def _results(rows: int) -> pl.DataFrame:
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    i = pl.int_range(rows, eager=True)
    failed = (i % 50) == 7
    done = pl.Series([start]).dt.offset_by("0s").item()
    seconds = (i * 2_592_000 // rows).cast(pl.Int64)  # spread over 30 days
    frame = pl.DataFrame({"i": i}).with_columns(
        id=pl.format("row-{}", "i"),
        fingerprint=pl.format("fp{}", "i"),
        result_index=pl.when(failed).then(None).otherwise(0),
        status=pl.when(failed).then(pl.lit("failed")).otherwise(pl.lit("succeeded")),
        task_uuid=pl.format("task-{}", "i"),
        image_uuid=pl.format("img-{}", "i"),
        image_url=pl.format("https://im.runware.ai/image/{}.jpg", "i"),
        cost_usd=pl.when(failed).then(None).otherwise(pl.lit(pl.Series(PRICES)).get(pl.col("i") % 5)),
        cost_source=pl.lit("provider"),
        estimate_usd=pl.lit(pl.Series(PRICES)).get(pl.col("i") % 5),
        model=pl.lit("openai:1@2"),
        width=pl.lit(1024),
        height=pl.lit(1024),
        quality=pl.lit(pl.Series(["low", "medium", "medium", "high", "high"])).get(pl.col("i") % 5),
        background=pl.lit("opaque"),
        output_format=pl.lit("JPG"),
        prompt=pl.format("a studio photo of product {} on white", "i"),
        local_path=pl.lit(None, dtype=pl.String),
        sha256=pl.lit(None, dtype=pl.String),
        bytes=pl.lit(None, dtype=pl.Int64),
        attempts=pl.lit(1),
        error_code=pl.when(failed).then(pl.lit("invalidPrompt")).otherwise(None),
        error_message=pl.when(failed).then(pl.lit("refused")).otherwise(None),
        submitted_at=pl.lit(done) + pl.duration(seconds=seconds - 5),
        completed_at=pl.lit(done) + pl.duration(seconds=seconds),
        latency_s=pl.lit(5.0),
        run_id=pl.format("run{}", pl.col("i") * 10 // rows),
        job=pl.lit("million"),
        category=pl.format("cat{}", pl.col("i") % 20),
    )
    return frame.drop("i")


def _ledger(results: pl.DataFrame, path: Path) -> None:
    at = pl.col("completed_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
    base = [pl.col("id"), pl.col("fingerprint"), pl.col("task_uuid"), pl.col("run_id")]
    submitted = results.select(
        pl.lit("submitted").alias("event"),
        *base,
        attempt=pl.lit(1),
        estimate_usd="estimate_usd",
        request=pl.struct("model", "prompt", "width", "height", "quality", "background", "output_format"),
        passthrough=pl.struct("category"),
        at=at,
    )
    ok = results.filter(pl.col("status") == "succeeded")
    image = pl.struct(index=pl.lit(0), image_uuid="image_uuid", image_url="image_url", cost_usd="cost_usd")
    succeeded = ok.select(
        pl.lit("succeeded").alias("event"), *base, images=pl.concat_list(image), cost_usd="cost_usd", at=at
    )
    duplicates = succeeded.gather_every(1000).with_columns(
        pl.format("{}-dup", "task_uuid").alias("task_uuid")
    )
    failed = results.filter(pl.col("status") == "failed").select(
        pl.lit("failed").alias("event"),
        *base,
        code="error_code",
        message="error_message",
        retryable=pl.lit(False),
        at=at,
    )
    with path.open("wb") as f:
        f.write(
            b'{"event":"job","version":1,"namespace":"ns","job":"million","at":"2026-10-01T00:00:00.000Z"}\n'
        )
        for frame in (submitted, succeeded, failed, duplicates):
            frame.write_ndjson(f)


def prepare(rows: int, ledger: bool) -> Path:
    out = DATA / f"report-{rows}"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "results.parquet").exists():
        started = time.perf_counter()
        results = _results(rows)
        results.write_parquet(out / "results.parquet")
        pl.DataFrame(
            {"row_number": [3, 9], "id": ["x", "y"], "reason": ["empty prompt", "bad size"]}
        ).write_parquet(out / "rejects.parquet")
        _ledger(results, out / "ledger.jsonl")
        print(f"generated {rows:,} rows in {time.perf_counter() - started:.1f} s under {out}")
    ledger_path, hidden = out / "ledger.jsonl", out / "ledger.jsonl.off"
    if ledger and hidden.exists():
        hidden.rename(ledger_path)
    if not ledger and ledger_path.exists():
        ledger_path.rename(hidden)
    return out


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``python -m pipeline ARGV`` (RSS polled every 10 ms)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *argv], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    proc, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(
            f"pipeline {' '.join(argv)} failed: {child.stderr.read().decode() if child.stderr else ''}"
        )
    return elapsed, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-ledger", action="store_true", help="measure the results table alone")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best is reported")
    args = parser.parse_args()
    out = prepare(args.rows, not args.no_ledger)
    size = sum(f.stat().st_size for f in out.iterdir() if f.name != "ledger.jsonl.off") / 2**20
    html = out / "report.html"
    cases = {
        "baseline: pipeline report --help": ["report", "--help"],
        "total": ["report", str(out), "--format", "json"],
        "--by day --by category": ["report", str(out), "--by", "day", "--by", "category", "--format", "csv"],
        "--by run --by quality --by size": [
            "report",
            str(out),
            "--by",
            "run",
            "--by",
            "quality",
            "--by",
            "size",
        ],
        "--by week + --html": ["report", str(out), "--by", "week", "--format", "json", "--html", str(html)],
    }
    print(
        f"{args.rows:,} result rows, ledger {'off' if args.no_ledger else 'on'}, {size:,.0f} MiB on disk,"
        f" {os.cpu_count()} CPUs"
    )
    print(f"| case | wall s (best of {args.repeat}) | x baseline | peak RSS MiB |")
    print("|---|---:|---:|---:|")
    baseline = None
    for name, argv in cases.items():
        runs = [measure(argv) for _ in range(args.repeat)]
        wall, rss = min(r[0] for r in runs), max(r[1] for r in runs)
        baseline = baseline or wall
        print(f"| {name} | {wall:.2f} | {wall / baseline:.1f} | {rss:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
