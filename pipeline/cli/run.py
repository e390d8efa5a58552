"""`pipeline run`: run or resume a job.

pipeline run jobs/demo.toml          # exit 0 all done, 1 some failed, 3 limit, 4 locked, 5 provider
pipeline run jobs/demo.toml --json   # the job's totals, and "this_run": what this invocation did
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from pipeline.cli._output import emit_json, err_console, say
from pipeline.config.jobspec import JobSpec, load_job_spec
from pipeline.config.profiles import ProviderProfile, load_model_profile, load_provider_profile
from pipeline.errors import ConfigError, ModelUnavailableError
from pipeline.run.outcome import UNAVAILABLE_LIMIT, Outcome, Stop, StoppedModel

if TYPE_CHECKING:
    from pipeline.runware.client import Delivery

__all__ = ["register", "resolve_provider", "stopped_model_lines", "this_run_line"]


def register(run: argparse.ArgumentParser) -> None:
    """The arguments of `run`."""
    run.add_argument("job", metavar="JOB.toml", help="the job spec")
    run.add_argument(
        "--progress-interval", type=float, default=10.0, help="seconds between progress lines off a terminal"
    )
    run.set_defaults(func=_handle_run)


# -- provider ------------------------------------------------------------------------------------------


def _api_key(spec: JobSpec, profile: ProviderProfile) -> str:
    variable = spec.provider.api_key_env or profile.api_key_env
    key = os.environ.get(variable) or profile.default_api_key
    if not key:
        raise ConfigError(
            spec.spec_path, "provider.api_key_env", f"no API key: set the environment variable {variable}"
        )
    return key


def resolve_provider(spec: JobSpec) -> tuple[ProviderProfile, str | None, str, Delivery]:
    """(profile, endpoint or None for the embedded sandbox, api key, delivery)."""
    profile = load_provider_profile(spec.provider.profile)
    endpoint = spec.provider.endpoint or (None if profile.embedded else profile.endpoint)
    delivery = spec.provider.delivery or profile.delivery
    return profile, endpoint, _api_key(spec, profile), delivery


@asynccontextmanager
async def _endpoint(endpoint: str | None) -> AsyncIterator[str]:
    """The endpoint, starting the embedded sandbox on a free loopback port when there is none."""
    if endpoint is not None:
        yield endpoint
        return
    from pipeline.sandbox import SandboxSettings, running_sandbox

    async with running_sandbox(SandboxSettings()) as sandbox:
        yield sandbox.url


# -- run -----------------------------------------------------------------------------------------------


def _handle_run(args: argparse.Namespace) -> int:
    spec = load_job_spec(args.job)
    _, endpoint, api_key, delivery = resolve_provider(spec)
    console = None if (args.quiet or args.json) else err_console()
    _warn_lifecycle(spec, quiet=args.quiet)

    from pipeline.run.runner import Provider, run_job  # httpx, polars: only to run

    async def main() -> Outcome:
        async with _endpoint(endpoint) as url:
            return await run_job(
                spec,
                Provider(url, api_key, delivery),
                console=console,
                progress_interval=args.progress_interval,
            )

    outcome = anyio.run(main)
    if args.json:
        emit_json(outcome.summary())
    elif not args.quiet:
        _print_outcome(spec, outcome)
        _warn_lifecycle(
            spec, quiet=args.quiet, models=outcome.used - {spec.defaults.model, *outcome.models.stopped}
        )
    # even with --quiet or --json: why the run exits 5, and what to do about it
    if outcome.stop is Stop.FATAL and outcome.fatal is not None:
        say(f"stopped by the provider: {outcome.fatal}")
    for line in stopped_model_lines(outcome, dt.date.today()):
        say(line)
    return outcome.exit_code()


def _warn_lifecycle(spec: JobSpec, *, quiet: bool, models: set[str] | None = None) -> None:
    """A warning on stderr for each model that shuts down soon (or has): the job's default model before
    the run, the other models its rows used after it (the engine saw them as it went)."""
    today = dt.date.today()
    for model in sorted({spec.defaults.model} if models is None else models):
        try:
            warning = load_model_profile(model).lifecycle_warning(today)
        except KeyError:
            continue  # an unknown model is the manifest's error to report, row by row
        if warning and not quiet:
            say(f"warning: {warning}")


def stopped_model_lines(outcome: Outcome, today: dt.date) -> list[str]:
    """One line per model the provider refused: why, its shutdown, the rows left, what to do."""
    return [_stopped_line(s, outcome.unfinished[s.model], today) for s in outcome.stopped_models]


def _stopped_line(stopped: StoppedModel, left: int, today: dt.date) -> str:
    error = stopped.error
    answer = f"HTTP {error.status} {error.code}" if error.status is not None else error.code
    if isinstance(error, ModelUnavailableError):
        answer += f", {UNAVAILABLE_LIMIT} times in a row"
    when = stopped.shutdown_date
    if when is None:
        shutdown = "no shutdown date is known for it"
    elif when <= today:
        shutdown = f"it was shut down on {when}"
    else:
        shutdown = f"its shutdown is announced for {when}"
    rows = f"{left} row{'' if left == 1 else 's'} left pending"
    return (
        f"model {stopped.model} ({stopped.name}) was refused by the provider ({answer}): {shutdown}; "
        f"{rows}. {_instead(stopped.replacement)}"
    )


def _instead(replacement: str | None) -> str:
    where = "in [defaults] (or the model column) and run again"
    if replacement is None:
        return f"No replacement is known: pick another model (`pipeline models` lists them), set it {where}."
    return f'Its replacement is {replacement}: set model = "{replacement}" {where}.'


def this_run_line(outcome: Outcome) -> str:
    """What this invocation did: "this run: 12 sent, 12 succeeded, 0 failed, 12 images, $0.1320"."""
    run = outcome.this_run
    return (
        f"this run: {run.submitted} sent, {run.succeeded} succeeded, {run.failed} failed, "
        f"{run.images} images, ${run.spent_usd:.4f}"
    )


def _print_outcome(spec: JobSpec, outcome: Outcome) -> None:
    rows = outcome.summary()["rows"]
    say(
        f"{spec.name}: {rows['succeeded']} succeeded, {rows['failed']} failed, {rows['rejected']} rejected, "
        f"{rows['pending']} pending, {rows['in_doubt']} in doubt; {outcome.images} images, "
        f"spent ${outcome.spent_usd:.4f}"
    )
    say(this_run_line(outcome))
    if outcome.stop is Stop.BUDGET:
        say(
            f"budget of ${spec.limits.budget_usd} reached: the rows left would cost about "
            f"${outcome.left_usd:.4f}; raise limits.budget_usd and run again to finish"
        )
    elif outcome.stop is Stop.RUNTIME:
        say("max_runtime reached: run again to continue")
    elif outcome.stop is Stop.INTERRUPT or outcome.cancelled:
        say("interrupted: run again to resume")
