"""The ``pipeline`` command: parse arguments, hand over to a command, map errors to exit codes.

Each command lives in its own module exposing ``register(subparsers, common)``; the handler it sets as
``func`` takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import events, models, plan, report, run, sandbox, status
from pipeline.cli._output import log_level, say
from pipeline.errors import ExitCode, PipelineError

__all__ = ["build_parser", "main"]

_COMMANDS = (run, status, plan, report, events, models, sandbox)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more detail on stderr")
    common.add_argument(
        "--json", action="store_true", help="print one JSON summary on stdout and nothing else"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Bulk image generation through Runware: plan, run, resume and report jobs.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    for command in _COMMANDS:
        command.register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    log_level(args)
    try:
        code: int = args.func(args)
    except PipelineError as exc:
        say(str(exc), prefix="error: ", style="bold red")
        code = exc.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        code = ExitCode.INTERRUPTED
    sys.exit(code)
