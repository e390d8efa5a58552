"""The engine against the real sandbox on loopback: faults, kills, credits, budget, edits, bad keys."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from helpers.job_state import state_events
from helpers.sandbox_jobs import KEY, assert_billed_once, billing, cli, rewrite_job, wait_for, write_job

from pipeline.config.jobspec import load_job_spec
from pipeline.run.runner import Provider, run_job
from pipeline.sandbox import SandboxSettings, SandboxThread


def top_up(sandbox: Any, usd: float) -> None:
    httpx.post(f"{sandbox.base_url}/sandbox/balance", json={"usd": usd}).raise_for_status()


def results(job: Path) -> pl.DataFrame:
    return pl.read_parquet(job.parent / "out" / "results.parquet")


def logged(job: Path) -> list[Any]:
    """The events the job's state holds (committed so far, while a run may be going on)."""
    return state_events(job.parent / "out")


def ledger_events(job: Path, kind: str) -> list[Any]:
    return [e for e in logged(job) if e.kind == kind]


async def run(job: Path, url: str, key: str = KEY) -> Any:
    return await run_job(load_job_spec(job), Provider(url, key), handle_signals=False)


@pytest.fixture
def sandbox_factory() -> Iterator[Any]:
    started: list[Any] = []

    def start(**settings: Any) -> Any:
        sb = SandboxThread(SandboxSettings(**settings))
        started.append(sb)
        return sb.__enter__()

    yield start
    for sb in started:
        sb.__exit__(None, None, None)


@pytest.mark.slow  # a fault soak: 120 rows through every kind of fault
class TestFaults:
    @pytest.mark.anyio
    async def test_every_row_finishes_and_is_charged_once(self, tmp_path: Path, sandbox_factory: Any) -> None:
        """5xx, 429 with Retry-After, hung requests, dropped connections and malformed bodies: each row
        succeeds and the sandbox bills exactly one task per row."""
        faults = {
            "500": 0.04, "503": 0.03, "504": 0.03, "429-retry-after": 0.05,
            "hang": 0.02, "drop": 0.02, "malformed": 0.01,
        }  # fmt: skip
        sb = sandbox_factory(seed=11, latency="20ms", faults=faults)
        job = write_job(tmp_path, sb.url, 120, concurrency=16, max_attempts=12, request_timeout_s=1.0)
        outcome = await run(job, sb.url)
        assert outcome.summary()["rows"]["succeeded"] == 120
        assert outcome.exit_code() == 0
        assert_billed_once(sb, 120)
        table = results(job)
        assert table["id"].n_unique() == len(table) == 120
        assert set(table["status"]) == {"succeeded"}


class TestKills:
    @pytest.mark.slow
    def test_sigkill_at_random_moments_never_pays_twice(self, tmp_path: Path, sandbox_factory: Any) -> None:
        """Killed with SIGKILL ten times (some mid results-write), restarted each time: every row
        succeeds once, no duplicate result rows, no double charge."""
        rng = random.Random(5)
        sb = sandbox_factory(seed=3, latency="300ms")
        job = write_job(tmp_path, sb.url, 160, concurrency=4)
        kills = mid_write = 0
        while kills < 10:
            size = len(logged(job))
            proc = cli(job)
            wait_for(lambda size=size: len(logged(job)) > size + 1)  # sending
            if kills % 2:  # aim this kill at a results-table write: the moment its temp file appears
                wait_for(lambda proc=proc: bool(stale_temps(job)) or proc.poll() is not None, poll=0.0005)
            else:
                time.sleep(rng.uniform(0.0, 1.0))
            if proc.poll() is not None:
                proc.communicate()
                break  # finished before the kill
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kills += 1
            mid_write += bool(stale_temps(job))  # a table write was cut off by this kill
        assert kills >= 10
        assert mid_write > 0, "no kill landed during a results write"
        final = cli(job, "--json")
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
        summary = json.loads(out)
        assert summary["rows"]["succeeded"] == 160
        assert summary["exit_code"] == 0
        assert_billed_once(sb, 160)
        table = results(job)
        assert len(table) == 160
        assert table["id"].n_unique() == 160
        assert len(ledger_events(job, "run")) >= 11
        assert in_doubt_at_restarts(job) > 0  # some kills did land with requests in flight
        assert stale_temps(job) == []  # the half-written tables those kills left were cleaned up


def stale_temps(job: Path) -> list[Path]:
    return list((job.parent / "out").glob(".*.tmp"))


def in_doubt_at_restarts(job: Path) -> int:
    """How many tasks were left in doubt (submitted, no verdict) when a run started."""
    open_tasks: set[str] = set()
    found = 0
    for event in logged(job):
        if event.kind == "run":
            found += len(open_tasks)
        elif event.kind == "submitted":
            open_tasks.add(event.task_uuid)
        elif event.kind in ("succeeded", "failed"):
            open_tasks.discard(event.task_uuid)
    return found


class TestProviderStops:
    @pytest.mark.anyio
    async def test_credits_run_out_then_top_up(self, tmp_path: Path, sandbox_factory: Any) -> None:
        """402 stops the run with exit 5 keeping every result; after a top-up a re-run finishes."""
        sb = sandbox_factory(balance_usd=0.05)
        job = write_job(tmp_path, sb.url, 10)
        first = await run(job, sb.url)
        assert first.exit_code() == 5
        paid = billing(sb)["tasks"]
        assert 1 <= paid < 10
        assert len(results(job).filter(pl.col("status") == "succeeded")) == paid
        top_up(sb, 5.0)
        second = await run(job, sb.url)
        assert second.exit_code() == 0
        assert_billed_once(sb, 10)

    @pytest.mark.anyio
    async def test_wrong_key_stops_after_the_first_answer(self, tmp_path: Path, sandbox_factory: Any) -> None:
        """A wrong API key: one request (the free key check), exit 5, nothing sent for a row, nothing
        billed, and the key appears nowhere."""
        sb = sandbox_factory(api_key="the-right-key")
        job = write_job(tmp_path, sb.url, 40, concurrency=16)
        outcome = await run(job, sb.url, key=KEY)
        assert outcome.exit_code() == 5
        assert billing(sb)["requests"] == 1
        assert len(ledger_events(job, "submitted")) == 0
        assert billing(sb)["tasks"] == 0
        for path in (tmp_path / "out").rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes()


class TestDelivery:
    @pytest.mark.anyio
    async def test_async_delivery_polls_get_response(self, tmp_path: Path, sandbox_factory: Any) -> None:
        """[provider] delivery = "async": tasks are acknowledged, then polled to success, billed once."""
        sb = sandbox_factory(latency="50ms")
        job = write_job(tmp_path, sb.url, 12)
        job.write_text(job.read_text().replace("[limits]", 'delivery = "async"\n[limits]'))
        spec = load_job_spec(job)
        outcome = await run_job(spec, Provider(sb.url, KEY, delivery="async"), handle_signals=False)
        assert outcome.exit_code() == 0
        assert_billed_once(sb, 12)
        assert len(results(job)) == 12


class FailingImages(httpx.AsyncBaseTransport):
    """Real HTTP, except that every image download fails."""

    def __init__(self) -> None:
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            raise httpx.ConnectError("images unreachable", request=request)
        return await self._real.handle_async_request(request)

    async def aclose(self) -> None:
        await self._real.aclose()


class TestDownloads:
    @pytest.mark.anyio
    async def test_failed_download_is_retried_alone(self, tmp_path: Path, sandbox_factory: Any) -> None:
        """Images that could not be fetched are fetched by the next run, which generates nothing."""
        sb = sandbox_factory()
        job = write_job(tmp_path, sb.url, 4)
        rewrite_job(tmp_path, sb.url, download=True)
        spec = load_job_spec(job)
        first = await run_job(spec, Provider(sb.url, KEY), handle_signals=False, transport=FailingImages())
        assert first.summary()["rows"]["succeeded"] == 4
        assert len(ledger_events(job, "download_failed")) == 4
        assert not list((tmp_path / "out" / "images").glob("*.jpg"))
        submitted = len(ledger_events(job, "submitted"))
        second = await run(job, sb.url)
        assert second.exit_code() == 0
        assert len(ledger_events(job, "submitted")) == submitted
        assert len(list((tmp_path / "out" / "images").glob("*.jpg"))) == 4
        assert_billed_once(sb, 4)
        table = results(job)
        assert table["local_path"].null_count() == 0


class TestMoney:
    @pytest.mark.anyio
    async def test_budget_stops_and_a_larger_one_finishes(self, tmp_path: Path, sandbox_factory: Any) -> None:
        """Budget $0.05 at $0.011 a row: exit 3 after 4 rows; with $1 the re-run does the other 6 only."""
        sb = sandbox_factory()
        job = write_job(tmp_path, sb.url, 10, budget_usd=0.05)
        first = await run(job, sb.url)
        assert first.exit_code() == 3
        assert first.summary()["rows"]["succeeded"] == 4
        assert float(first.left_usd) == pytest.approx(0.066)
        rewrite_job(tmp_path, sb.url, budget_usd=1.0)
        second = await run(job, sb.url)
        assert second.exit_code() == 0
        assert_billed_once(sb, 10)
        assert second.summary()["spent_usd"] == pytest.approx(0.11)


class TestEdits:
    @pytest.mark.anyio
    async def test_editing_one_prompt_regenerates_only_that_row(
        self, tmp_path: Path, sandbox_factory: Any
    ) -> None:
        """A re-run after editing row r2's prompt sends exactly one task, for r2."""
        sb = sandbox_factory()
        job = write_job(tmp_path, sb.url, 6)
        await run(job, sb.url)
        csv = (tmp_path / "prompts.csv").read_text().replace("a 2 red bicycle", "a 2 blue bicycle")
        (tmp_path / "prompts.csv").write_text(csv)
        before = len(ledger_events(job, "submitted"))
        outcome = await run(job, sb.url)
        assert outcome.exit_code() == 0
        new = ledger_events(job, "submitted")[before:]
        assert [e.id for e in new] == ["r2"]
        assert billing(sb)["tasks"] == 7
        assert billing(sb)["duplicate_tasks"] == 0


@pytest.mark.slow  # `pipeline run` subprocesses interrupted mid-run, then run again
class TestSignals:
    def test_sigint_drains_and_writes_results(self, tmp_path: Path, sandbox_factory: Any) -> None:
        """First SIGINT: in-flight work finishes, results are written, exit 130, nothing left in doubt."""
        sb = sandbox_factory(latency="200ms")
        job = write_job(tmp_path, sb.url, 30, concurrency=4)
        proc = cli(job)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(ledger_events(job, "succeeded")) >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode == 130
        table = results(job)
        assert 3 <= len(table) < 30
        states = {e.task_uuid: e.kind for e in logged(job) if e.kind in
                  ("submitted", "succeeded", "failed")}  # fmt: skip
        assert "submitted" not in states.values()
        rerun = cli(job)
        rerun.communicate(timeout=60)
        assert rerun.returncode == 0
        assert_billed_once(sb, 30)

    def test_second_sigint_cancels_at_once_and_the_next_run_reconciles(
        self, tmp_path: Path, sandbox_factory: Any
    ) -> None:
        """Two SIGINTs: exit 130 without waiting for slow tasks (left in doubt); the next run records
        them from getResponse, paying nothing twice."""
        sb = sandbox_factory(latency="3s")
        job = write_job(tmp_path, sb.url, 8, concurrency=4, request_timeout_s=30)
        proc = cli(job)
        wait_for(lambda: len(ledger_events(job, "submitted")) >= 4)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
        assert proc.returncode == 130
        assert in_doubt_now(job) >= 1
        rerun = cli(job)
        rerun.communicate(timeout=120)
        assert rerun.returncode == 0
        assert in_doubt_now(job) == 0
        assert_billed_once(sb, 8)


def in_doubt_now(job: Path) -> int:
    open_tasks: set[str] = set()
    for event in logged(job):
        if event.kind == "submitted":
            open_tasks.add(event.task_uuid)
        elif event.kind in ("succeeded", "failed"):
            open_tasks.discard(event.task_uuid)
    return len(open_tasks)
