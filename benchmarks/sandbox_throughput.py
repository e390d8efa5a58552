"""Sandbox throughput: small imageInference requests per second, zero latency, no faults.

    uv run python benchmarks/sandbox_throughput.py [--seconds 5] [--clients 2] [--concurrency 32]

Starts `pipeline sandbox` in a subprocess (uvloop + httptools), drives it from --clients client processes
(--concurrency keep-alive connections each; --client raw: a minimal asyncio HTTP/1.1 client, the default,
or --client httpx) and reports requests per second. For scale, the same
clients then drive a bare uvicorn "hello world" ASGI app (the baseline: the most this machine's clients
and uvicorn can do), and the ratio is printed. Images are not fetched (URL output renders on first GET).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent

_BASELINE_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"data":[]}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def task() -> list[dict[str, object]]:
    return [
        {
            "taskType": "imageInference",
            "taskUUID": str(uuid.uuid4()),
            "model": "openai:1@2",
            "positivePrompt": "a small benchmark prompt",
            "width": 1024,
            "height": 1024,
            "outputType": "URL",
            "includeCost": True,
            "providerSettings": {"openai": {"quality": "low", "background": "opaque"}},
        }
    ]


async def drive_raw(url: str, seconds: float, concurrency: int, fetch: bool = False) -> tuple[int, int]:
    """Like ``drive`` but with a minimal keep-alive HTTP/1.1 client on asyncio streams: far cheaper per
    request than httpx, so on a small machine the server, not the client, is what gets measured.
    With ``fetch`` each answer's image is downloaded too (rendered on that first GET)."""
    import asyncio

    parsed = httpx.URL(url)
    ok = failed = 0
    deadline = time.perf_counter() + seconds

    def request() -> bytes:
        body = json.dumps(task()).encode()
        head = (
            f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\n"
            f"Authorization: Bearer bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
        writer.write(data)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await reader.readexactly(length)
        return body if head.startswith(b"HTTP/1.1 200") else b""

    async def worker() -> None:
        nonlocal ok, failed
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            while time.perf_counter() < deadline:
                body = await exchange(reader, writer, request())
                if body and fetch:
                    path = httpx.URL(json.loads(body)["data"][0]["imageURL"]).raw_path.decode()
                    get = f"GET {path} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\n\r\n"
                    body = await exchange(reader, writer, get.encode())
                if body:
                    ok += 1
                else:
                    failed += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed


async def drive(url: str, seconds: float, concurrency: int) -> tuple[int, int]:
    """Requests answered 200 and failed, in ``seconds`` at ``concurrency`` (httpx)."""
    ok = failed = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:

        async def worker() -> None:
            nonlocal ok, failed
            headers = {"Authorization": "Bearer bench"}
            while time.perf_counter() < deadline:
                response = await http.post(url, json=task(), headers=headers)
                if response.status_code == 200:
                    ok += 1
                else:
                    failed += 1

        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(worker)
    return ok, failed


def client_process(
    client: str,
    url: str,
    seconds: float,
    concurrency: int,
    fetch: bool,
    out: mp.Queue,  # type: ignore[type-arg]
) -> None:
    if client == "raw":
        result = anyio.run(drive_raw, url, seconds, concurrency, fetch, backend_options={"use_uvloop": True})
    else:
        result = anyio.run(drive, url, seconds, concurrency, backend_options={"use_uvloop": True})
    out.put(result)


def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(400):
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            httpx.get(f"{base}/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def measure(
    cmd: list[str], port: int, path: str, args: argparse.Namespace, fetch: bool = False
) -> tuple[float, int]:
    """Requests per second (200s only) and the number of failures, against the server ``cmd`` starts."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        for warm in range(2):  # warm up: connections, caches
            anyio.run(drive, base + path, 0.5 if warm else 0.2, 8)
        queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        procs = [
            mp.Process(
                target=client_process,
                args=(args.client, base + path, args.seconds, args.concurrency, fetch, queue),
            )
            for _ in range(args.clients)
        ]
        start = time.perf_counter()
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        elapsed = time.perf_counter() - start
        for p in procs:
            p.join()
    finally:
        proc.terminate()
        proc.wait(10)
    ok = sum(r[0] for r in results)
    return ok / max(elapsed, args.seconds), sum(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight per client process")
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw", help="raw asyncio HTTP/1.1 (default) or httpx"
    )
    parser.add_argument(
        "--fetch", action="store_true", help="also download each image (raw client; renders on first GET)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare-uvicorn baseline")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    port = free_port()
    sandbox_cmd = [sys.executable, "-m", "pipeline", "sandbox", "--quiet", "--port", str(port)]
    sandbox_rps, failures = measure(sandbox_cmd, port, "/v1", args, fetch=args.fetch)
    result: dict[str, object] = {
        "sandbox_rps": round(sandbox_rps),
        "failures": failures,
        "client": args.client,
        "clients": args.clients,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "fetch": args.fetch,
    }
    if not (args.no_baseline or args.fetch):
        port = free_port()
        baseline_rps, _ = measure([sys.executable, "-c", _BASELINE_APP, str(port)], port, "/", args)
        result["baseline_rps"] = round(baseline_rps)
        result["ratio_to_baseline"] = round(sandbox_rps / baseline_rps, 2)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"sandbox: {result['sandbox_rps']} req/s ({failures} failures), "
        f"{args.clients} {args.client} client processes x {args.concurrency} in flight, {args.seconds:g} s"
    )
    if "baseline_rps" in result:
        print(f"bare uvicorn baseline: {result['baseline_rps']} req/s -> ratio {result['ratio_to_baseline']}")


if __name__ == "__main__":
    main()
