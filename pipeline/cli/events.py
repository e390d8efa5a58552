"""`pipeline events JOB.toml [-o FILE]`: the job's append-only event log as JSON Lines, for an audit.

pipeline events jobs/demo.toml                  # every event, oldest first, on stdout
pipeline events jobs/demo.toml -o audit.jsonl   # written to a file (atomically: complete or absent)

Each line is an event exactly as it was recorded; for a job imported from 0.1, the lines of its
``ledger.jsonl``, then what happened since. A consistent snapshot even while the job runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli._output import emit_json, say
from pipeline.config.jobspec import load_job_spec
from pipeline.errors import ExitCode, UsageError
from pipeline.output.status import read_state
from pipeline.state import export_events

__all__ = ["register"]


def register(parser: argparse.ArgumentParser) -> None:
    """The arguments of `events`."""
    parser.add_argument("job", metavar="JOB.toml", help="the job spec")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    spec = load_job_spec(args.job)
    if args.json and not args.output:
        raise UsageError("--json needs -o FILE: without it, stdout holds the events themselves")
    store = read_state(spec.out_dir)
    if store is None:
        raise UsageError(f"{spec.out_dir}: no job state yet: run the job first")
    with store:
        if args.output:
            count = export_events(store, Path(args.output))
        else:
            count = store.export_jsonl(sys.stdout)
            sys.stdout.flush()
    if args.json:
        emit_json({"events": count, "output": args.output})
    elif args.output and not args.quiet:
        say(f"wrote {count} events to {args.output}")
    return ExitCode.OK
