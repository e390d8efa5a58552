"""A model the provider refuses stops the run for that model only: one refused request, its rows pending.

The engine against a scripted Runware (``helpers.fake_runware``), then end to end against the real sandbox
playing a provider that dropped ``openai:1@2`` (DESIGN.md "Retired models").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from helpers.engine_runs import events, make_spec, run
from helpers.fake_runware import FakeRunware
from helpers.paths import ROOT

from pipeline.cli.run import stopped_model_lines
from pipeline.config.jobspec import load_job_spec
from pipeline.errors import ModelRefusedError, ModelUnavailableError
from pipeline.rows import ImageRequest, Row
from pipeline.run.outcome import UNAVAILABLE_LIMIT, Outcome, StoppedModel
from pipeline.run.runner import Provider, run_job
from pipeline.sandbox import SandboxHandle, SandboxSettings, SandboxThread
from pipeline.state import open_job_state
from pipeline.state.events import SubmittedEvent
from pipeline.state.ids import task_uuid_for

RETIRED, LIVE = "openai:1@2", "openai:gpt-image@2"
CODES = ["invalidModel", "modelNotFound", "modelUnavailable"]
KEY = "sk-retired-models-KEY"


def model_row(i: int, model: str = RETIRED) -> Row:
    background = "opaque" if model == RETIRED else ""
    request = ImageRequest(model, f"a red bicycle number {i}", 1024, 1024, "medium", background, "JPG", 1)
    fingerprint = hashlib.sha256(repr(request).encode()).hexdigest()[:32]
    return Row(i + 1, f"row{i}", fingerprint, request, {})


def refused_requests(code: str) -> int:
    """What a retired model costs: one request, or ``UNAVAILABLE_LIMIT`` for the "not now" code."""
    return UNAVAILABLE_LIMIT if code == "modelUnavailable" else 1


class TestEngine:
    @pytest.mark.anyio
    @pytest.mark.parametrize("code", CODES)
    async def test_one_refused_request_and_every_row_pending(self, tmp_path: Path, code: str) -> None:
        """50 rows on a retired model: one request (three for modelUnavailable), exit 5, all pending."""
        spec, fake = make_spec(tmp_path, concurrency=1), FakeRunware(retired={RETIRED: code})
        outcome = await run(spec, fake, [model_row(i) for i in range(50)])
        assert fake.inference_requests == refused_requests(code)
        assert outcome.exit_code() == 5
        assert outcome.rows == {"succeeded": 0, "failed": 0, "pending": 50, "in_doubt": 0}
        assert all(e.retryable for e in events(spec, "failed"))
        [stopped] = outcome.stopped_models
        assert (stopped.model, stopped.error.code) == (RETIRED, code)
        assert (stopped.shutdown_date, stopped.replacement) == (dt.date(2026, 12, 1), LIVE)
        summary = outcome.summary()["stopped_models"]
        assert summary == [
            {
                "model": RETIRED,
                "code": code,
                "status": {"invalidModel": 400, "modelNotFound": 404, "modelUnavailable": 503}[code],
                "message": f"Model {RETIRED} is not available.",
                "shutdown_date": "2026-12-01",
                "replacement": LIVE,
                "pending_rows": 50,
                "left_usd": pytest.approx(50 * 0.011),
            }
        ]

    @pytest.mark.anyio
    @pytest.mark.parametrize("code", CODES)
    async def test_other_models_go_on(self, tmp_path: Path, code: str) -> None:
        """A job mixing a retired and a live model: the live rows all succeed, the others stay pending."""
        spec, fake = make_spec(tmp_path, concurrency=2), FakeRunware(retired={RETIRED: code})
        rows = [model_row(i, RETIRED if i % 2 else LIVE) for i in range(40)]
        outcome = await run(spec, fake, rows)
        assert outcome.rows == {"succeeded": 20, "failed": 0, "pending": 20, "in_doubt": 0}
        assert {t["model"] for t in fake.tasks.values()} == {LIVE}
        assert fake.requests_for(RETIRED) <= refused_requests(code) + 1  # + one in flight
        assert outcome.exit_code() == 5
        assert outcome.summary()["stopped_models"][0]["pending_rows"] == 20

    @pytest.mark.anyio
    @pytest.mark.parametrize("code", CODES)
    async def test_requests_in_flight_are_the_only_extra_cost(self, tmp_path: Path, code: str) -> None:
        """With 8 in flight: at most the refusals that stop it plus the 7 others already sent."""
        spec, fake = make_spec(tmp_path, concurrency=8), FakeRunware(retired={RETIRED: code})
        outcome = await run(spec, fake, [model_row(i) for i in range(200)])
        assert fake.inference_requests <= refused_requests(code) + 7
        assert outcome.rows["pending"] == 200
        assert outcome.exit_code() == 5

    @pytest.mark.anyio
    async def test_unavailable_then_served_is_not_stopped(self, tmp_path: Path) -> None:
        """modelUnavailable twice, a success, twice again: every row succeeds (the count starts over)."""
        script = ["modelUnavailable"] * 2 + ["ok"] + ["modelUnavailable"] * 2
        spec, fake = make_spec(tmp_path, concurrency=1, max_attempts=5), FakeRunware(script=script)
        outcome = await run(spec, fake, [model_row(i) for i in range(4)])
        assert outcome.rows["succeeded"] == 4
        assert outcome.stopped_models == []
        assert outcome.exit_code() == 0

    @pytest.mark.anyio
    async def test_the_next_run_finishes_the_rows_once_the_model_is_back(self, tmp_path: Path) -> None:
        """After the provider stops refusing, a second run sends each pending row once."""
        spec, fake = make_spec(tmp_path, concurrency=4), FakeRunware(retired={RETIRED: "invalidModel"})
        rows = [model_row(i) for i in range(20)]
        await run(spec, fake, rows)
        fake.retired.clear()
        again = await run(spec, fake, rows)
        assert again.rows["succeeded"] == 20
        assert again.exit_code() == 0
        assert sorted(fake.charges.values()) == [1] * 20


class TestSettle:
    @pytest.mark.anyio
    async def test_a_404_to_a_resubmission_stops_the_model_not_a_loop(self, tmp_path: Path) -> None:
        """A lost answer, getResponse "unknown", the resubmission answered 404: the model stops there."""
        spec, fake = make_spec(tmp_path, concurrency=1), FakeRunware(script=["500", "modelNotFound"])
        outcome = await run(spec, fake, [model_row(i) for i in range(10)])
        assert fake.inference_requests == 2  # the send and its resubmission with the same taskUUID
        assert outcome.rows["pending"] == 10
        assert outcome.exit_code() == 5

    @pytest.mark.anyio
    async def test_unavailable_resubmissions_count_toward_the_stop(self, tmp_path: Path) -> None:
        """A resubmission answered modelUnavailable is a verdict: new attempts, and a stop at the third."""
        script = ["500"] + ["modelUnavailable"] * 10
        spec, fake = make_spec(tmp_path, concurrency=1), FakeRunware(script=script)
        outcome = await run(spec, fake, [model_row(i) for i in range(10)])
        assert fake.inference_requests == 1 + UNAVAILABLE_LIMIT
        assert outcome.rows["pending"] == 10
        assert outcome.exit_code() == 5

    @pytest.mark.anyio
    async def test_tasks_in_doubt_are_asked_about_but_never_resubmitted(self, tmp_path: Path) -> None:
        """Three tasks in doubt from a crash: each is asked about; once the model is refused, none is
        resent (they stay in doubt for the next run); a paid one is recorded."""
        spec = make_spec(tmp_path, concurrency=1)
        rows = [model_row(i) for i in range(4)]
        fake = FakeRunware(retired={RETIRED: "invalidModel"})
        with open_job_state(spec.out_dir, job=spec.name) as store:
            for row in rows[:3]:
                uid = task_uuid_for(store.namespace, row.fingerprint, 1)
                store.record(
                    SubmittedEvent.for_row(row, task_uuid=uid, attempt=1, run_id="x", estimate_usd=0.011)
                )
            fake.tasks[uid] = {"numberResults": 1}  # the last one ran (and was paid) before the crash
        outcome = await run(spec, fake, rows)
        assert fake.inference_requests == 1
        asked = [b[0]["taskUUID"] for b in fake.requests if b[0]["taskType"] == "getResponse"]
        assert len(set(asked)) == 3
        assert outcome.rows == {"succeeded": 1, "failed": 0, "pending": 2, "in_doubt": 1}
        assert outcome.exit_code() == 5


class TestMessage:
    def outcome(self, error: Exception, shutdown: dt.date | None, replacement: str | None) -> Outcome:
        outcome = Outcome()
        assert isinstance(error, (ModelRefusedError, ModelUnavailableError))
        stopped = StoppedModel(RETIRED, "GPT Image 1 Mini", error, shutdown, replacement)
        outcome.models.stopped[RETIRED] = stopped
        for _ in range(48):
            outcome.count("pending", RETIRED)
        return outcome

    def test_names_the_model_its_shutdown_and_its_replacement(self) -> None:
        """The line says what was refused, when the model shut down, what is left and what to do."""
        error = ModelRefusedError(message="gone", code="invalidModel", status=400)
        [line] = stopped_model_lines(self.outcome(error, dt.date(2026, 12, 1), LIVE), dt.date(2026, 12, 1))
        assert line == (
            "model openai:1@2 (GPT Image 1 Mini) was refused by the provider (HTTP 400 invalidModel): "
            "it was shut down on 2026-12-01; 48 rows left pending. Its replacement is openai:gpt-image@2: "
            'set model = "openai:gpt-image@2" in [defaults] (or the model column) and run again.'
        )

    def test_says_when_nothing_is_known(self) -> None:
        """No shutdown date, no replacement: the line says so, and how to choose another model."""
        error = ModelUnavailableError(message="busy", code="modelUnavailable", status=503)
        [line] = stopped_model_lines(self.outcome(error, None, None), dt.date(2026, 12, 1))
        assert "(HTTP 503 modelUnavailable, 3 times in a row)" in line
        assert "no shutdown date is known" in line
        assert "No replacement is known" in line
        assert "pipeline models" in line

    def test_a_refusal_before_the_announced_date(self) -> None:
        """Refused before its shutdown date: the date is announced, not past."""
        error = ModelRefusedError(message="gone", code="modelNotFound", status=404)
        [line] = stopped_model_lines(self.outcome(error, dt.date(2027, 1, 1), LIVE), dt.date(2026, 12, 1))
        assert "its shutdown is announced for 2027-01-01" in line


# -- end to end: the real sandbox on loopback, playing a provider that dropped openai:1@2 ---------------


Retiring = Callable[[str], SandboxHandle]


@pytest.fixture
def retiring() -> Iterator[Retiring]:
    """Start a sandbox that refuses openai:1@2 with a code (and judges lifecycles on 2026-12-01)."""
    started: list[SandboxThread] = []

    def start(code: str) -> SandboxHandle:
        settings = SandboxSettings(retire={RETIRED: code}, lifecycle=True, today=dt.date(2026, 12, 1))
        started.append(SandboxThread(settings))
        return started[-1].__enter__()

    yield start
    for sandbox in started:
        sandbox.__exit__(None, None, None)


def write_job(folder: Path, url: str, models: list[str], concurrency: int = 1) -> Path:
    """A job whose [defaults] name the retired model; a ``model`` column only when rows mix models."""
    mixed = set(models) != {RETIRED}
    header = "id,prompt,sku" + (",model" if mixed else "")
    lines = [f"r{i},a {i} red bicycle,SKU-{i}" + (f",{m}" if mixed else "") for i, m in enumerate(models)]
    (folder / "prompts.csv").write_text("\n".join([header, *lines]) + "\n")
    job = folder / "job.toml"
    job.write_text(
        'name = "retired"\nmanifest = "prompts.csv"\noutput_dir = "out"\n'
        f'[provider]\nprofile = "sandbox"\nendpoint = "{url}"\n'
        f'[defaults]\nmodel = "{RETIRED}"\n'
        f"[limits]\nconcurrency = {concurrency}\nmax_attempts = 5\nrequest_timeout_s = 5.0\n"
        "[output]\ndownload = false\n"
    )
    return job


def pipeline(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNWARE_API_KEY": KEY}
    cmd = [sys.executable, "-m", "pipeline", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def status(job: Path) -> dict[str, int]:
    done = pipeline("status", str(job), "--json")
    assert done.returncode == 0, done.stderr
    rows: dict[str, int] = json.loads(done.stdout)["rows"]
    return rows


async def run_in_process(job: Path, url: str) -> Outcome:
    return await run_job(load_job_spec(job), Provider(url, KEY), handle_signals=False)


def sent(sandbox: SandboxHandle, runs: int = 1) -> int:
    """imageInference requests that reached the sandbox: POST /v1 requests (with sync delivery and no
    faults) but each run's first, the free check of its API key."""
    return int(sandbox.billing()["requests"]) - runs


class TestAgainstTheSandbox:
    @pytest.mark.parametrize("code", CODES)
    def test_a_retired_model_costs_one_request(self, tmp_path: Path, retiring: Retiring, code: str) -> None:
        """`pipeline run` on 50 rows of a retired model: one refused request (three for
        modelUnavailable), exit 5, every row pending, nothing charged, and a message that names the
        model, its shutdown date and its replacement."""
        sb = retiring(code)
        job = write_job(tmp_path, sb.url, [RETIRED] * 50)
        done = pipeline("run", str(job), "--json")
        assert done.returncode == 5, done.stderr
        assert sent(sb) == refused_requests(code)
        assert status(job) == {
            "total": 50, "rejected": 0, "succeeded": 0, "failed": 0, "pending": 50, "in_doubt": 0
        }  # fmt: skip
        assert sb.billing()["tasks"] == 0
        assert sb.billing()["total_usd"] == 0
        [stopped] = json.loads(done.stdout)["stopped_models"]
        assert (stopped["model"], stopped["code"], stopped["pending_rows"]) == (RETIRED, code, 50)
        message = next(line for line in done.stderr.splitlines() if "was refused by the provider" in line)
        for fact in (RETIRED, "GPT Image 1 Mini", "2026-12-01", LIVE, code, "50 rows left pending"):
            assert fact in message

    @pytest.mark.anyio
    @pytest.mark.parametrize("code", CODES)
    async def test_rows_of_other_models_go_on(self, tmp_path: Path, retiring: Retiring, code: str) -> None:
        """Half the rows on the retired model, half on its replacement (a model column): the
        replacement's rows all succeed, the others stay pending, exit 5."""
        sb = retiring(code)
        job = write_job(tmp_path, sb.url, [RETIRED, LIVE] * 10, concurrency=2)
        outcome = await run_in_process(job, sb.url)
        assert outcome.rows == {"succeeded": 10, "failed": 0, "pending": 10, "in_doubt": 0}
        assert outcome.exit_code() == 5
        assert sb.billing()["tasks"] == 10
        assert sent(sb) - 10 <= refused_requests(code) + 1  # + one of its rows in flight
        assert [s.model for s in outcome.stopped_models] == [RETIRED]

    @pytest.mark.anyio
    @pytest.mark.parametrize("code", CODES)
    async def test_only_requests_in_flight_add_to_the_cost(
        self, tmp_path: Path, retiring: Retiring, code: str
    ) -> None:
        """Concurrency 8 on 200 rows: the refusals that stop the model, plus at most 7 in flight."""
        sb = retiring(code)
        job = write_job(tmp_path, sb.url, [RETIRED] * 200, concurrency=8)
        outcome = await run_in_process(job, sb.url)
        assert outcome.rows["pending"] == 200
        assert outcome.exit_code() == 5
        assert sent(sb) <= refused_requests(code) + 7

    @pytest.mark.anyio
    @pytest.mark.parametrize("code", CODES)
    async def test_the_next_run_finishes_once_the_provider_serves_it_again(
        self, tmp_path: Path, retiring: Retiring, code: str
    ) -> None:
        """The provider stops refusing the model: the next run finishes every pending row, each paid once."""
        sb = retiring(code)
        job = write_job(tmp_path, sb.url, [RETIRED] * 30, concurrency=4)
        first = await run_in_process(job, sb.url)
        assert first.exit_code() == 5
        async with httpx.AsyncClient() as http:  # the provider serves the model again
            answer = await http.post(f"{sb.base_url}/sandbox/faults", json={"retire": {}, "lifecycle": False})
            answer.raise_for_status()
        again = await run_in_process(job, sb.url)
        assert again.rows["succeeded"] == 30
        assert again.exit_code() == 0
        bill = sb.billing()
        assert (bill["tasks"], bill["duplicate_tasks"], bill["duplicate_prompts"]) == (30, 0, 0)
