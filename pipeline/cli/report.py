"""`pipeline report PATH...`: cost report over results tables, job specs and output dirs."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline.cli._output import say
from pipeline.errors import ExitCode, UsageError
from pipeline.output.report.keys import DERIVED_KEYS, FORMATS

_EPILOG = (
    "PATH: job specs (*.toml), output dirs or results files; globs are expanded (quote them). "
    "--by takes any results column (passthrough columns included) or a derived key: "
    f"{', '.join(DERIVED_KEYS)}."
)


def register(parser: argparse.ArgumentParser) -> None:
    """The arguments of `report`."""
    parser.description = "Spend, images, failures and waste per group, summed exactly."
    parser.epilog = _EPILOG
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="job spec, output dir or results file (globs ok)"
    )
    parser.add_argument("--by", action="append", default=[], metavar="COL", help="group by COL (repeatable)")
    parser.add_argument(
        "--since", metavar="WHEN", help="completed at or after (2026-11-01 or ISO datetime, UTC)"
    )
    parser.add_argument("--until", metavar="WHEN", help="completed before (a bare date includes that day)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="output format (default: table)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page to FILE")
    parser.set_defaults(func=_handle)


def _render(report: Any, fmt: str) -> str:
    from pipeline.output.report.format import to_csv, to_json, to_markdown, to_table

    if fmt == "json":
        return json.dumps(to_json(report), indent=2, default=str) + "\n"
    if fmt == "csv":
        return to_csv(report)
    if fmt == "markdown":
        return to_markdown(report)
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None, force_terminal=False).print(to_table(report))
    return buffer.getvalue()


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{output}: cannot write ({exc.strerror or exc})") from exc


def _handle(args: argparse.Namespace) -> int:
    if args.json and args.format not in (None, "json"):
        raise UsageError(f"--json and --format {args.format} ask for different outputs; give one")
    fmt = args.format or ("json" if args.json else "table")
    from pipeline.output.report.build import (  # polars: only now
        load_facts,
        parse_when,
        resolve_sources,
        summarize,
    )
    from pipeline.output.report.format import to_table

    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until, end=True) if args.until else None
    sources = resolve_sources(args.paths)
    facts = load_facts(sources, args.by, since=since, until=until)
    report = summarize(facts)
    if fmt == "table" and args.output is None and sys.stdout.isatty():
        Console().print(to_table(report))
    else:
        _write(_render(report, fmt), args.output)
    if args.html:
        from pipeline.output.report.html import write_html

        write_html(report, facts, Path(args.html))
    if not args.quiet:
        for note in report.notes:
            say(f"note: {note}")
        if args.html:
            say(f"wrote {args.html}")
    return ExitCode.OK
