"""`pipeline results JOB.toml`: the results table rebuilt whole from the job's state.

pipeline results jobs/demo.toml          # output/demo/results.parquet (and the spec's other formats)
"""

from __future__ import annotations

import argparse

from pipeline.cli._output import emit_json, say
from pipeline.config.jobspec import load_job_spec
from pipeline.errors import ExitCode, UsageError
from pipeline.state import LEDGER_NAME, STATE_NAME

__all__ = ["register"]


def register(results: argparse.ArgumentParser) -> None:
    """The arguments of `results`."""
    results.add_argument("job", metavar="JOB.toml", help="the job spec")
    results.set_defaults(func=_handle_results)


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
