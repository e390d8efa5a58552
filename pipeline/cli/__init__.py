"""The ``pipeline`` command: parse arguments, hand over to a command, map errors to exit codes.

Each command lives in a module of its own exposing ``register(parser)``, which adds the command's
arguments and sets as ``func`` a handler that takes the parsed arguments and returns an exit code.
Only the module of the command being run is imported (``pipeline --help`` imports none), so a command
pays for its own dependencies only: ``status`` never loads polars or httpx, ``--help`` not even rich.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pipeline.cli._output import log_level, say
from pipeline.errors import ExitCode, PipelineError

__all__ = ["COMMANDS", "build_parser", "main"]

# name -> (module, one line of help), in the order ``pipeline --help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pipeline.cli.run", "run or resume a job until every row is done or a limit is hit"),
    "status": ("pipeline.cli.status", "what the job's state says now"),
    "results": ("pipeline.cli.results", "rebuild the results table from the job's state"),
    "plan": (
        "pipeline.cli.plan",
        "dry run: validate, count new/changed/done rows, estimate cost and time, model lifecycle",
    ),
    "report": ("pipeline.cli.report", "cost report from results tables, job specs or output dirs"),
    "events": ("pipeline.cli.events", "export the job's append-only event log (JSON Lines) for an audit"),
    "models": (
        "pipeline.cli.models",
        "the model catalog: status (live / retiring / retired), sizes, prices, replacement",
    ),
    "sandbox": ("pipeline.cli.sandbox", "run the Runware-compatible sandbox server (faults on demand)"),
}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more detail on stderr")
    common.add_argument(
        "--json", action="store_true", help="print one JSON summary on stdout and nothing else"
    )
    return common


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the command it names gets its arguments (the others are listed,
    not imported); without, every command gets them."""
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Bulk image generation through Runware: plan, run, resume and report jobs.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    named = None if argv is None else next((arg for arg in argv if not arg.startswith("-")), "")
    for name, (module, help_text) in COMMANDS.items():
        command = subparsers.add_parser(name, parents=[common], help=help_text)
        if named is None or name == named:
            importlib.import_module(module).register(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
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
