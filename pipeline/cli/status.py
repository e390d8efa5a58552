"""`pipeline status` and `pipeline results`: read the job's state.

pipeline status jobs/demo.toml --json     # what the state says now (instant: running totals)
pipeline status jobs/demo.toml --verify   # re-read the manifest for exact manifest-relative rows
pipeline results jobs/demo.toml           # rebuild results.parquet (and .csv) from the state
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.cli._output import emit_json, say
from pipeline.config.jobspec import load_job_spec
from pipeline.errors import ExitCode, UsageError
from pipeline.output.status import read_state, status_payload
from pipeline.state import LEDGER_NAME, STATE_NAME

__all__ = ["register"]


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Register `status` and `results`."""
    status = subparsers.add_parser("status", parents=[common], help="what the job's state says now")
    status.add_argument("job", metavar="JOB.toml", help="the job spec")
    status.add_argument(
        "--verify",
        action="store_true",
        help="re-read the manifest (seconds for a big one) instead of its summary from the last plan or run",
    )
    status.set_defaults(func=_handle_status)
    results = subparsers.add_parser(
        "results", parents=[common], help="rebuild the results table from the job's state"
    )
    results.add_argument("job", metavar="JOB.toml", help="the job spec")
    results.set_defaults(func=_handle_results)


def _handle_status(args: argparse.Namespace) -> int:
    spec = load_job_spec(args.job)
    store = read_state(spec.out_dir)
    try:
        payload = status_payload(store, spec, verify=True if args.verify else None)
    finally:
        if store is not None:
            store.close()
    if args.json:
        emit_json(payload)
        return ExitCode.OK
    rows = payload["rows"]
    say(
        f"{spec.name}: {rows['total']} rows: {rows['succeeded']} done, {rows['failed']} failed, "
        f"{rows['in_doubt']} in doubt, {rows['pending']} pending, {rows['rejected']} rejected; "
        f"{payload['images']} images, spent ${payload['spent_usd']:.4f}",
        stdout=True,
    )
    return ExitCode.OK


def _handle_results(args: argparse.Namespace) -> int:
    spec = load_job_spec(args.job)
    if not any((spec.out_dir / name).exists() for name in (STATE_NAME, LEDGER_NAME)):
        raise UsageError(f"{spec.out_dir}: no job state yet: run the job first")
    from pipeline.output.results.write import rebuild_results  # polars: only when rebuilding

    path = rebuild_results(spec)
    if args.json:
        emit_json({"results": str(path), "formats": list(spec.output.formats)})
    elif not args.quiet:
        say(f"wrote {path}")
    return ExitCode.OK
