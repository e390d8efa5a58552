"""`pipeline plan JOB.toml`: validate everything and estimate the run; sends no request.

pipeline plan jobs/demo.toml          # counts, cost by model/quality/size, time, warnings, first rejects
pipeline plan jobs/demo.toml --json   # the same as one JSON object on stdout

It also shows each model's lifecycle (live / retiring / retired) with, for a retiring one, what its rows
would cost on its replacement; why "changed" rows changed (model, prompt, size... with counts); and which
of them an earlier model already generated (done with ``[resume] keep_earlier_models = true``).

Exit 0 when every row is valid, 1 when some rows are rejected (listed in output_dir/rejects.parquet),
2 when the job spec or the manifest cannot be used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os

from pipeline.cli._output import emit_json, out_console
from pipeline.config.jobspec import JobSpec, load_job_spec
from pipeline.config.profiles import load_provider_profile

__all__ = ["register"]


def register(parser: argparse.ArgumentParser) -> None:
    """The arguments of `plan`."""
    parser.add_argument("job", metavar="JOB.toml", help="the job spec")
    parser.add_argument(
        "--show-rejects",
        type=int,
        default=10,
        metavar="N",
        help="how many rejected rows to list (default 10)",
    )
    parser.set_defaults(func=_handle)


def _provider_warnings(spec: JobSpec) -> list[str]:
    """The provider profile must exist; a missing API key is worth saying before `run` refuses."""
    profile = load_provider_profile(spec.provider.profile)
    variable = spec.provider.api_key_env or profile.api_key_env
    if os.environ.get(variable) or profile.default_api_key:
        return []
    return [f"the environment variable {variable} is not set: `pipeline run` needs the API key there"]


def _handle(args: argparse.Namespace) -> int:
    spec = load_job_spec(args.job)
    warnings = _provider_warnings(spec)
    today = dt.datetime.now(dt.UTC).date()
    from pipeline.output.plan.build import build_plan
    from pipeline.output.plan.format import plan_json, render_plan  # polars: only when planning

    plan = build_plan(spec, today, shown_rejects=max(args.show_rejects, 0))
    plan.warnings.extend(warnings)
    if args.json:
        emit_json(plan_json(plan))
    elif not args.quiet:
        out_console().print(render_plan(plan), soft_wrap=True)
    return 1 if plan.rows.rejected else 0
