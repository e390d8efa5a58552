"""`pipeline sandbox`: run the Runware-compatible sandbox server until Ctrl-C or SIGTERM.

pipeline sandbox --port 8080 --latency uniform:100ms-2s --fault 429=0.1 --fault hang=0.01 --seed 7
pipeline sandbox --lifecycle --retire openai:1@1=modelNotFound   # play a provider that dropped models
"""

from __future__ import annotations

import argparse
import signal

import anyio
from pydantic import ValidationError

from pipeline.cli._output import emit_json, err_console
from pipeline.errors import ExitCode, UsageError
from pipeline.sandbox.settings import FAULT_KINDS, RETIRE_CODES, SandboxSettings

__all__ = ["build_settings", "parse_fault", "parse_retire", "register"]


def register(parser: argparse.ArgumentParser) -> None:
    """The arguments of `sandbox`."""
    parser.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="interface to listen on (default: loopback)"
    )
    parser.add_argument(
        "--port", type=int, default=8080, metavar="N", help="port (0 = a free one; default 8080)"
    )
    parser.add_argument(
        "--api-key", default=None, metavar="KEY", help="accept only this key (default: any non-empty key)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, metavar="N", help="seed of the fault and latency draws"
    )
    parser.add_argument(
        "--latency",
        default="0",
        metavar="SPEC",
        help="0 | 300ms | uniform:100ms-2s | lognormal:800ms:0.5 (median:sigma)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"inject a fault in this share of requests (0..1); KIND: {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument(
        "--capacity", type=int, default=None, metavar="N", help="429 past this many tasks in flight"
    )
    parser.add_argument(
        "--balance",
        type=float,
        default=None,
        metavar="USD",
        help="credit in USD; then 402 insufficientCredits",
    )
    parser.add_argument(
        "--retry-after", type=float, default=1.0, metavar="S", help="Retry-After of 429-retry-after (s)"
    )
    parser.add_argument(
        "--lifecycle",
        action="store_true",
        help="refuse models past their shutdown date (invalidModel), as the real API will",
    )
    parser.add_argument(
        "--retire",
        action="append",
        default=[],
        metavar="MODEL[=CODE]",
        help=f"refuse MODEL as a provider that dropped it; CODE: {', '.join(RETIRE_CODES)} "
        "(default invalidModel)",
    )
    parser.add_argument(
        "--today",
        default=None,
        metavar="YYYY-MM-DD",
        help="the date --lifecycle judges by (default: today, UTC; for tests and rehearsals)",
    )
    parser.set_defaults(func=_handle)


def parse_fault(text: str) -> tuple[str, float]:
    """``"429=0.1"`` -> ``("429", 0.1)``."""
    kind, sep, rate = text.partition("=")
    if not sep:
        raise UsageError(f"--fault {text!r}: expected KIND=RATE, e.g. 429=0.1")
    try:
        return kind.strip(), float(rate)
    except ValueError:
        raise UsageError(f"--fault {text!r}: {rate!r} is not a number") from None


def parse_retire(text: str) -> tuple[str, str]:
    """``"openai:1@2=modelNotFound"`` -> ``("openai:1@2", "modelNotFound")``; the code defaults to
    ``invalidModel``."""
    model, _, code = text.partition("=")
    if not model.strip():
        raise UsageError(f"--retire {text!r}: expected MODEL[=CODE], e.g. openai:1@2=modelNotFound")
    return model.strip(), code.strip() or "invalidModel"


def build_settings(args: argparse.Namespace) -> SandboxSettings:
    """The settings the flags describe; a ``UsageError`` names the bad flag."""
    faults = dict(parse_fault(text) for text in args.fault)
    try:
        return SandboxSettings(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            seed=args.seed,
            latency=args.latency,
            faults=faults,
            capacity=args.capacity,
            balance_usd=args.balance,
            retry_after_s=args.retry_after,
            lifecycle=args.lifecycle,
            retire=dict(parse_retire(text) for text in args.retire),
            today=args.today,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_usd", "").replace("_s", "").replace("_", "-")
        flag = "--fault" if flag == "--faults" else flag
        raise UsageError(f"{flag}: {str(first['msg']).removeprefix('Value error, ')}") from None


async def _serve(settings: SandboxSettings, as_json: bool, quiet: bool) -> None:
    from pipeline.sandbox.server import running_sandbox  # uvicorn and Pillow: only to serve

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with running_sandbox(settings) as sandbox:
            if as_json:
                emit_json({"url": sandbox.url, "base_url": sandbox.base_url})
            else:
                print(f"Runware sandbox listening on {sandbox.url}", flush=True)
            if not quiet:
                err_console().print(f"billing: {sandbox.base_url}/sandbox/billing  (Ctrl-C to stop)")
            async for _ in signals:
                break


def _handle(args: argparse.Namespace) -> int:
    settings = build_settings(args)
    try:
        anyio.run(_serve, settings, args.json, args.quiet, backend_options={"use_uvloop": True})
    except OSError as exc:
        raise UsageError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    return ExitCode.OK
