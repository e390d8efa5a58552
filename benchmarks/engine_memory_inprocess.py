"""Peak memory of the engine alone: `run_job` in-process on N streamed rows against a stub transport.

    uv run python benchmarks/engine_memory_inprocess.py 100000

No sandbox and no results table (the table builder is measured by the storage benchmarks): what is left
is the engine's own working set plus the ledger state, which grows with rows done (~0.9 KB a row).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
from engine_common import Batch, make_rows, make_spec

import pipeline.run.runner as runner
from pipeline.run.runner import Provider, run_job


def stub(request: httpx.Request) -> httpx.Response:
    """Every task succeeds at once with one image."""
    task = json.loads(request.content)[0]
    uid = task["taskUUID"]
    item = {
        "taskType": "imageInference",
        "taskUUID": uid,
        "imageUUID": uid,
        "imageURL": f"http://x/{uid}.jpg",
    }
    return httpx.Response(200, json={"data": [{**item, "cost": 0.005}]})


def batches(n: int) -> Iterator[Batch]:
    for start in range(0, n, 10_000):
        rows = make_rows(min(10_000, n - start), f"b{start}")
        yield Batch(
            [r.__class__(r.row_number + start, f"{start}-{r.id}", r.fingerprint, r.request) for r in rows]
        )


async def main(n: int) -> None:
    async def no_tables(*args: object) -> None:
        return None

    runner._write_tables = no_tables  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        spec = make_spec(Path(tmp), 64)
        start = time.perf_counter()
        outcome = await run_job(
            spec, Provider("http://stub/v1", "k"), batches=batches(n), transport=httpx.MockTransport(stub),
            handle_signals=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n} rows: {outcome.rows}, {elapsed:.1f} s, peak RSS {peak:.1f} MB")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
