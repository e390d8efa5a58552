"""What every command shares for output: stderr console, JSON on stdout, log level."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["emit_json", "err_console", "log_level", "out_console", "say"]


@cache
def err_console() -> Console:
    """Progress, logs and errors: always stderr, so ``--json`` keeps stdout clean."""
    from rich.console import Console  # rich only once something is printed: ``--help`` needs none

    return Console(stderr=True)


def out_console() -> Console:
    from rich.console import Console

    return Console()


def say(text: str, *, prefix: str = "", style: str = "", stdout: bool = False) -> None:
    """Print ``text`` exactly as it is: ids, prompts and paths may hold ``[...]``, never markup.

    ``prefix`` (e.g. ``"error: "``) is printed in ``style`` before it.
    """
    from rich.text import Text

    console = out_console() if stdout else err_console()
    console.print(Text.assemble((prefix, style), text), highlight=False, soft_wrap=True)


def emit_json(payload: dict[str, Any]) -> None:
    """Write one JSON object to stdout, and nothing else."""
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def log_level(args: argparse.Namespace) -> None:
    """-q: errors only; default: warnings; -v: info; -vv: debug. Logs go to stderr."""
    verbose = getattr(args, "verbose", 0)
    levels = {0: logging.WARNING, 1: logging.INFO}
    level = logging.ERROR if getattr(args, "quiet", False) else levels.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
