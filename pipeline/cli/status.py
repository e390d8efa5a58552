"""`pipeline status`: what the job's state says now.

pipeline status jobs/demo.toml --json     # what the state says now (instant: running totals)
pipeline status jobs/demo.toml --verify   # re-read the manifest for exact manifest-relative rows
"""

from __future__ import annotations

import argparse

from pipeline.cli._output import emit_json, say
from pipeline.config.jobspec import load_job_spec
from pipeline.errors import ExitCode
from pipeline.output.status import read_state, status_payload

__all__ = ["register"]


def register(status: argparse.ArgumentParser) -> None:
    """The arguments of `status`."""
    status.add_argument("job", metavar="JOB.toml", help="the job spec")
    status.add_argument(
        "--verify",
        action="store_true",
        help="re-read the manifest (seconds for a big one) instead of its summary from the last plan or run",
    )
    status.set_defaults(func=_handle_status)


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
