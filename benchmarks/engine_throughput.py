"""Engine throughput against the sandbox, as a ratio to a bare httpx + anyio loop, in the same run.

    uv run python benchmarks/engine_throughput.py [--rows 2000] [--concurrency 32]
    uv run python benchmarks/engine_throughput.py --latency 500ms --concurrency 64 --rows 1280

Zero latency: ratio engine / bare loop (target >= 0.8). With latency L at concurrency C the ideal is
C / L tasks per second (500 ms, 64: 128/s); the engine's ratio to it (target >= 0.9).
The sandbox runs in its own process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import httpx
from engine_common import Batch, make_rows, make_spec, sandbox_process

from pipeline.jobspec import parse_duration
from pipeline.ledger import LEDGER_NAME, read_events
from pipeline.runner import Provider, run_job
from pipeline.runware import inference_task


async def bare_loop(url: str, rows: int, concurrency: int, tag: str) -> float:
    """Tasks per second of the simplest client: N workers posting the same tasks, nothing else."""
    requests = [r.request for r in make_rows(rows, tag)]
    queue = iter(requests)
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        headers = {"Authorization": "Bearer bench"}

        async def worker() -> None:
            for request in queue:
                task = inference_task(request, str(uuid.uuid4()))
                response = await http.post(url, json=[task], headers=headers)
                response.raise_for_status()

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        return rows / (time.perf_counter() - start)


async def engine(url: str, rows: int, concurrency: int, tag: str, folder: Path) -> tuple[float, float]:
    """(tasks/s over the whole run_job call, tasks/s from the first send to the last answer)."""
    spec = make_spec(folder, concurrency)
    batches = iter([Batch(make_rows(rows, tag))])
    start = time.perf_counter()
    outcome = await run_job(spec, Provider(url, "bench"), batches=batches, handle_signals=False)
    elapsed = time.perf_counter() - start
    assert outcome.rows["succeeded"] == rows, outcome.summary()
    stamps = [
        (e.kind, dt.datetime.fromisoformat(e.at.replace("Z", "+00:00")).timestamp())
        for e in read_events(spec.out_dir / LEDGER_NAME)
        if e.kind in ("submitted", "succeeded")
    ]
    first = min(t for kind, t in stamps if kind == "submitted")
    last = max(t for kind, t in stamps if kind == "succeeded")
    return rows / elapsed, rows / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", default="0")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with sandbox_process("--latency", args.latency) as base, tempfile.TemporaryDirectory() as tmp:
        url = f"{base}/v1"
        best_bare = best_engine = best_sending = 0.0
        for i in range(args.repeat):
            best_bare = max(best_bare, anyio.run(bare_loop, url, args.rows, args.concurrency, f"bare{i}"))
            folder = Path(tmp) / f"e{i}"
            whole, sending = anyio.run(engine, url, args.rows, args.concurrency, f"eng{i}", folder)
            best_engine, best_sending = max(best_engine, whole), max(best_sending, sending)
        latency = parse_duration(args.latency) if args.latency != "0" else 0.0
        print(f"rows={args.rows} concurrency={args.concurrency} latency={args.latency}")
        print(f"bare httpx+anyio loop: {best_bare:8.1f} tasks/s")
        print(f"engine (pipeline run): {best_engine:8.1f} tasks/s  (whole run_job: ledger, results table)")
        print(f"engine while sending:  {best_sending:8.1f} tasks/s  (first send to last answer)")
        print(f"ratio engine/bare:     {best_engine / best_bare:8.3f}")
        print(f"ratio sending/bare:    {best_sending / best_bare:8.3f}")
        if latency:
            ideal = args.concurrency / latency
            print(f"ideal C/latency:       {ideal:8.1f} tasks/s")
            print(f"ratio engine/ideal:    {best_engine / ideal:8.3f}")
            print(f"ratio sending/ideal:   {best_sending / ideal:8.3f}")


if __name__ == "__main__":
    main()
