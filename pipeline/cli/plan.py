"""`pipeline plan`: placeholder until its issue lands (owned by its issue's work)."""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.errors import UsageError


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("plan", parents=[common], help="(not built yet)")
    parser.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    raise UsageError("'pipeline plan' is not built yet")
