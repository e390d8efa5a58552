"""Ledger and results-table speed on a synthetic N-row ledger (default 100k rows, 200k lines).

    uv run python benchmarks/ledger_storage.py [--rows 100000]

Each figure is also given as a ratio to a baseline measured in the same run on the same file: plain
``json.loads`` of every line (the least any reader of a JSON Lines ledger must do).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.ledger import (
    LEDGER_NAME,
    ImageResult,
    LedgerWriter,
    SubmittedEvent,
    SucceededEvent,
    load_state,
    read_row_states,
    task_uuid_for,
)
from pipeline.results import write_results


def write_ledger(path: Path, rows: int, fsync: Any) -> None:
    with LedgerWriter(path, job="bench", fsync=fsync) as ledger:
        for i in range(rows):
            fingerprint = f"{i:064x}"
            task = task_uuid_for(ledger.namespace, fingerprint, 1)
            request = {
                "model": "openai:1@2",
                "prompt": f"a studio product photo of item {i} on a white background",
                "width": 1024,
                "height": 1024,
                "quality": "medium",
                "background": "opaque",
                "output_format": "JPG",
                "number_results": 1,
                "reference_images": [],
            }
            ledger.append(
                SubmittedEvent(
                    id=f"sku-{i}",
                    fingerprint=fingerprint,
                    task_uuid=task,
                    attempt=1,
                    run_id="run",
                    estimate_usd=0.011,
                    request=request,
                    passthrough={"category": "shoes", "locale": "en-GB"},
                )
            )
            image = ImageResult(
                index=0, image_uuid=task, image_url=f"https://im.example/{task}.jpg", cost_usd=0.011
            )
            ledger.append(
                SucceededEvent(
                    id=f"sku-{i}",
                    fingerprint=fingerprint,
                    task_uuid=task,
                    run_id="run",
                    images=(image,),
                    cost_usd=0.011,
                )
            )


def json_baseline(path: Path) -> None:
    with path.open("rb") as f:
        for line in f:
            json.loads(line)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        path = out / LEDGER_NAME
        write_s = timed(lambda: write_ledger(path, rows, "never"))
        group = out / "group" / LEDGER_NAME
        group_s = timed(lambda: write_ledger(group, min(rows, 20_000), "group")) * rows / min(rows, 20_000)
        size_mb = path.stat().st_size / 1e6
        baseline = timed(lambda: json_baseline(path))
        figures = {
            "append (fsync=never)": write_s,
            "append (fsync=group, extrapolated)": group_s,
            "load_state": timed(lambda: load_state(path)),
            "read_row_states (plan)": timed(lambda: read_row_states(path)),
            "write_results (parquet)": timed(lambda: write_results(out, "bench")),
        }
    print(f"{rows} rows, {2 * rows} ledger lines, {size_mb:.0f} MB")
    print(f"{'json.loads baseline':38s} {baseline:7.2f} s   1.00x")
    for name, seconds in figures.items():
        print(f"{name:38s} {seconds:7.2f} s  {seconds / baseline:5.2f}x")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
