"""Throughput of the whole `pipeline run` process against the official SDK and the ideal, in one run.

    uv run python benchmarks/engine_throughput.py                       # 5,120 rows, concurrency 64, 500 ms
    uv run python benchmarks/engine_throughput.py --rows 2000 --concurrency 32 --latency 0 --repeat 2

Each contender gets a fresh `pipeline sandbox --latency L` in a process of its own (the sandbox keeps
every task for getResponse, and its garbage collector pauses longer the more it holds: on one shared
sandbox the last contender met pauses of 100-250 ms that the first never saw), and runs in a process of
its own, in turns (best of ``--repeat``):

- ``sdk``: runware-sdk (REST transport, ``deliveryMethod: sync``, ``http_base_url`` at the sandbox) sending
  the rows' tasks from C workers, timed inside its process from the first send to the last answer (the
  issue's measure), and as a whole process, from its start to its exit, as ``pipeline run`` is;
- ``bare``: the simplest client, C workers posting the same tasks with ``httpx.AsyncClient``, timed the
  same way;
- ``pipeline``: the whole ``pipeline run JOB --json`` process (interpreter start-up, manifest, state,
  key check, window, results table), timed from its start to its exit; its sending rate (first
  ``submitted_at`` to last ``completed_at`` in its results table) is printed too.

Every contender's modules are byte-compiled first (``compileall``), as ``pip install`` leaves them: with
``PYTHONDONTWRITEBYTECODE=1`` (set on the development machines) and uv's default of installing without
bytecode, each start would otherwise compile some 500 modules (about 0.8 s of the pipeline's start-up,
which the in-process timings of the SDK and the bare loop do not see).

With latency L at concurrency C the ideal is C / L tasks a second (500 ms, 64: 128/s). Issue 9's targets:
``pipeline`` at least 1.0 of ``sdk`` and 0.97 of the ideal. Every contender sends the same task (the one
the pipeline builds for the job's rows: ``pipeline.runware.wire.inference_task``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine_common import ROOT, sandbox_process

MODEL, QUALITY, SIZE, FORMAT = "openai:gpt-image@2", "low", 1024, "JPG"


def wire_task(prompt: str) -> dict[str, object]:
    """The task the pipeline sends for a row of the job below (without its taskUUID)."""
    from pipeline.config.profiles import load_model_profile
    from pipeline.rows import ImageRequest
    from pipeline.runware.wire import inference_task

    profile = load_model_profile(MODEL)
    request = ImageRequest(MODEL, prompt, SIZE, SIZE, QUALITY, "", FORMAT, 1)
    task = inference_task(request, "00000000-0000-4000-8000-000000000000", profile=profile).wire()
    del task["taskUUID"]
    return task


def prompts(rows: int, tag: str) -> list[str]:
    return [f"throughput {tag} product shot {i}" for i in range(rows)]


# -- contenders, each run as ``--client NAME`` in a process of its own ---------------------------------


async def run_sdk(url: str, tasks: list[dict[str, Any]], concurrency: int) -> float:
    """Seconds for runware-sdk to send every task from ``concurrency`` workers (sync delivery)."""
    from runware import Runware

    queue = iter(tasks)
    async with Runware(api_key="bench", transport="rest", http_base_url=url, max_retries=0) as sdk:

        async def worker() -> None:
            for task in queue:
                results = await sdk.run({**task, "deliveryMethod": "sync"})
                assert results, "no image"

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


async def run_bare(url: str, tasks: list[dict[str, Any]], concurrency: int) -> float:
    """Seconds for N httpx workers posting the tasks, nothing else."""
    import uuid

    import httpx

    queue = iter(tasks)
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        headers = {"Authorization": "Bearer bench"}

        async def worker() -> None:
            for task in queue:
                response = await http.post(
                    url, json=[{**task, "taskUUID": str(uuid.uuid4())}], headers=headers
                )
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def client_main(args: argparse.Namespace) -> None:
    tasks = json.loads(Path(args.tasks).read_text())
    run = run_sdk if args.client == "sdk" else run_bare
    seconds = asyncio.run(run(args.url, tasks, args.concurrency))
    print(json.dumps({"seconds": seconds, "tasks": len(tasks)}))


def contender(client: str, url: str, tasks: Path, concurrency: int) -> tuple[float, float]:
    """Tasks a second of ``client`` in its own process: timed inside it, and its whole process (start-up
    and reading the tasks file included, as ``pipeline run`` is timed)."""
    cmd = [sys.executable, __file__, "--client", client, "--url", url, "--tasks", str(tasks)]
    start = time.perf_counter()
    done = subprocess.run(
        [*cmd, "--concurrency", str(concurrency)], capture_output=True, text=True, check=True
    )
    whole = time.perf_counter() - start
    answer = json.loads(done.stdout)
    return float(answer["tasks"] / answer["seconds"]), float(answer["tasks"] / whole)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pipeline_run(
    url: str, folder: Path, rows: int, concurrency: int, tag: str, v01: Path | None = None
) -> tuple[float, float]:
    """(tasks/s of the whole ``pipeline run`` process, tasks/s while sending) for a fresh job of ``rows``;
    with ``v01``, of that 0.1 checkout (which knows only the openai:1@N models)."""
    import polars as pl

    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"id": [f"r{i}" for i in range(rows)], "prompt": prompts(rows, tag)}).write_csv(
        folder / "m.csv"
    )
    (folder / "job.toml").write_text(
        f'name = "throughput"\nmanifest = "m.csv"\noutput_dir = "out"\n'
        f'[provider]\nprofile = "sandbox"\nendpoint = "{url}"\n'
        f'[defaults]\nmodel = "{"openai:1@2" if v01 else MODEL}"\n'
        f'width = {SIZE}\nheight = {SIZE}\nquality = "{QUALITY}"\n'
        f'output_format = "{FORMAT}"\n[limits]\nconcurrency = {concurrency}\n'
        "[output]\ndownload = false\n"
    )
    python, cwd = (str(v01 / ".venv" / "bin" / "python"), v01) if v01 else (sys.executable, ROOT)
    cmd = [python, "-m", "pipeline", "run", str(folder / "job.toml"), "--json"]
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    whole = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    print(f"  pipeline run{' (0.1)' if v01 else ''}: {whole:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    summary = json.loads(done.stdout)
    assert summary["rows"]["succeeded"] == rows, (summary, done.stderr[-2000:])
    table = pl.read_parquet(folder / "out" / "results.parquet", columns=["submitted_at", "completed_at"])
    sending = (table["completed_at"].max() - table["submitted_at"].min()).total_seconds()  # type: ignore[operator, union-attr]
    return rows / whole, rows / sending


def compile_bytecode(*roots: Path) -> None:
    """Byte-compile ``roots`` (a checkout's package and its virtualenv's site-packages), quietly."""
    import compileall

    for root in roots:
        compileall.compile_dir(root, quiet=2, workers=0)


def _site_packages(python_root: Path) -> list[Path]:
    return sorted(python_root.glob("lib/python3*/site-packages"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5120)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", default="500ms", help="the sandbox's latency (0, 300ms, 1s)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--v01", type=Path, help="also run `pipeline run` of this 0.1 checkout (before)")
    parser.add_argument("--client", choices=("sdk", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tasks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    from pipeline.config.jobspec import parse_duration

    latency = parse_duration(args.latency) if args.latency not in ("0", "0s") else 0.0
    compile_bytecode(ROOT / "pipeline", *_site_packages(Path(sys.prefix)))
    if args.v01:
        compile_bytecode(args.v01 / "pipeline", *_site_packages(args.v01 / ".venv"))
    load = os.getloadavg()[0]
    best: dict[str, float] = {"sdk": 0.0, "bare": 0.0, "pipeline": 0.0, "sending": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            tasks = Path(tmp) / f"tasks{i}.json"
            tasks.write_text(json.dumps([wire_task(p) for p in prompts(args.rows, f"c{i}")]))
            for client in ("sdk", "bare"):
                with sandbox_process("--latency", args.latency) as base:
                    inside, whole = contender(client, f"{base}/v1", tasks, args.concurrency)
                best[client] = max(best[client], inside)
                best[f"{client} process"] = max(best.get(f"{client} process", 0.0), whole)
            with sandbox_process("--latency", args.latency) as base:
                folder = Path(tmp) / f"p{i}"
                whole, sending = pipeline_run(f"{base}/v1", folder, args.rows, args.concurrency, f"p{i}")
            best["pipeline"], best["sending"] = max(best["pipeline"], whole), max(best["sending"], sending)
            if args.v01:
                with sandbox_process("--latency", args.latency) as base:
                    url, folder = f"{base}/v1", Path(tmp) / f"v{i}"
                    whole, _ = pipeline_run(url, folder, args.rows, args.concurrency, f"v{i}", args.v01)
                best["0.1"] = max(best.get("0.1", 0.0), whole)
            print(f"  repeat {i + 1}: " + ", ".join(f"{k} {v:.1f}/s" for k, v in best.items()), flush=True)
    print(f"rows={args.rows} concurrency={args.concurrency} latency={args.latency} load={load:.1f}")
    print(f"runware-sdk (REST, sync), in its process: {best['sdk']:8.1f} tasks/s")
    print(f"bare httpx loop, in its process:          {best['bare']:8.1f} tasks/s")
    print(f"pipeline run, whole process:              {best['pipeline']:8.1f} tasks/s")
    print(f"pipeline run, first send to last answer:  {best['sending']:8.1f} tasks/s")
    if "0.1" in best:
        print(f"0.1 pipeline run, whole process:          {best['0.1']:8.1f} tasks/s")
        print(f"0.1 pipeline / sdk:                       {best['0.1'] / best['sdk']:8.3f}")
    print(f"runware-sdk, whole process:               {best['sdk process']:8.1f} tasks/s")
    print(f"pipeline / sdk:                           {best['pipeline'] / best['sdk']:8.3f}  (target >= 1.0)")
    print(f"pipeline / sdk, both whole processes:     {best['pipeline'] / best['sdk process']:8.3f}")
    print(f"pipeline / bare loop:                     {best['pipeline'] / best['bare']:8.3f}")
    if latency:
        ideal = args.concurrency / latency
        print(f"ideal C / latency:                        {ideal:8.1f} tasks/s")
        print(f"pipeline / ideal:                         {best['pipeline'] / ideal:8.3f}  (target >= 0.97)")
        print(f"sdk / ideal:                              {best['sdk'] / ideal:8.3f}")
        print(f"pipeline sending / ideal:                 {best['sending'] / ideal:8.3f}")


if __name__ == "__main__":
    main()
