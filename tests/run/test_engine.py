"""The engine against a scripted Runware (httpx.MockTransport): retries, reconciliation, limits, money."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from helpers.engine_runs import FAST, KEY, events, make_row, make_spec, run, run_with
from helpers.fake_runware import FakeRunware
from helpers.job_state import state_events

from pipeline.rows import Row
from pipeline.run.engine import EngineHooks
from pipeline.run.reconcile import Poll
from pipeline.state import STATE_NAME, Store, open_job_state


def assert_paid_once(fake: FakeRunware) -> None:
    assert all(n == 1 for n in fake.charges.values())
    assert all(n == 1 for n in fake.prompts.values())


class TestHappyPath:
    @pytest.mark.anyio
    async def test_every_row_succeeds_once(self, tmp_path: Path) -> None:
        """Ten rows: ten tasks charged once each, submitted before succeeded in the ledger."""
        spec, fake = make_spec(tmp_path), FakeRunware()
        rows = [make_row(i) for i in range(10)]
        outcome = await run(spec, fake, rows)
        assert outcome.rows["succeeded"] == 10
        assert outcome.exit_code() == 0
        assert len(fake.charges) == 10
        assert_paid_once(fake)
        logged = state_events(spec.out_dir)
        kinds = [e.kind for e in logged if e.kind in ("submitted", "succeeded")]
        for uid in fake.tasks:
            per_task = [e.kind for e in logged if getattr(e, "task_uuid", None) == uid]
            assert per_task == ["submitted", "succeeded"]
        assert len(kinds) == 20
        assert set(fake.auth) == {f"Bearer {KEY}"}
        assert KEY.encode() not in (spec.out_dir / STATE_NAME).read_bytes()

    @pytest.mark.anyio
    async def test_submitted_is_committed_before_the_request_leaves(self, tmp_path: Path) -> None:
        """Each imageInference request finds its ``submitted`` already committed: another connection to
        the job's state (what a crash would leave) sees the task in doubt when the request arrives."""
        spec, fake = make_spec(tmp_path, concurrency=8), FakeRunware()
        unrecorded: list[str] = []

        def check(request: httpx.Request) -> httpx.Response:
            task = json.loads(request.content)[0]
            if task["taskType"] == "imageInference":
                with Store.open(spec.out_dir / STATE_NAME) as view:
                    if task["taskUUID"] not in {e.task_uuid for e in view.in_doubt()}:
                        unrecorded.append(task["taskUUID"])
            return fake.handle(request)

        outcome = await run_with(spec, httpx.MockTransport(check), [make_row(i) for i in range(40)])
        assert outcome.rows["succeeded"] == 40
        assert unrecorded == []

    @pytest.mark.anyio
    async def test_rerun_sends_nothing(self, tmp_path: Path) -> None:
        """A second run over the same rows sends no request."""
        spec, fake = make_spec(tmp_path), FakeRunware()
        rows = [make_row(i) for i in range(5)]
        await run(spec, fake, rows)
        fake2 = FakeRunware()
        outcome = await run(spec, fake2, rows)
        assert fake2.requests == []
        assert outcome.rows["succeeded"] == 5
        assert outcome.exit_code() == 0

    @pytest.mark.anyio
    async def test_edited_prompt_regenerates_only_that_row(self, tmp_path: Path) -> None:
        """Changing one row's prompt makes that row (and only it) new work."""
        spec = make_spec(tmp_path)
        rows = [make_row(i) for i in range(5)]
        await run(spec, FakeRunware(), rows)
        rows[2] = make_row(2, prompt="a blue bicycle instead")
        fake = FakeRunware()
        await run(spec, fake, rows)
        assert [t["positivePrompt"] for t in fake.tasks.values()] == ["a blue bicycle instead"]

    @pytest.mark.anyio
    async def test_async_delivery_polls(self, tmp_path: Path) -> None:
        """deliveryMethod async: acknowledged, then polled with getResponse until success."""
        spec, fake = make_spec(tmp_path), FakeRunware()
        hooks = EngineHooks(backoff=FAST.backoff, poll=FAST.poll)
        outcome = await run(spec, fake, [make_row(i, n=2) for i in range(3)], hooks, delivery="async")
        assert outcome.rows["succeeded"] == 3
        assert all(t["deliveryMethod"] == "async" for t in fake.tasks.values())
        assert any(body[0]["taskType"] == "getResponse" for body in fake.requests)
        assert all(len(e.images) == 2 for e in events(spec, "succeeded"))


class TestRetries:
    @pytest.mark.anyio
    async def test_refusals_retry_with_a_new_task_uuid(self, tmp_path: Path) -> None:
        """429 and 503 refuse the task: the next attempt has a new taskUUID; one charge in the end."""
        spec, fake = make_spec(tmp_path, concurrency=1), FakeRunware(script=["429", "503"])
        outcome = await run(spec, fake, [make_row(0)])
        assert outcome.rows["succeeded"] == 1
        submitted = events(spec, "submitted")
        assert [e.attempt for e in submitted] == [1, 2, 3]
        assert len({e.task_uuid for e in submitted}) == 3
        assert [e.retryable for e in events(spec, "failed")] == [True, True]
        assert_paid_once(fake)

    @pytest.mark.anyio
    @pytest.mark.parametrize("fault", ["drop", "timeout", "malformed", "500c"])
    async def test_lost_answers_are_reconciled_not_repaid(self, tmp_path: Path, fault: str) -> None:
        """The task ran but its answer was lost: getResponse recovers it, with no second charge."""
        spec, fake = make_spec(tmp_path, concurrency=1), FakeRunware(script=[fault])
        outcome = await run(spec, fake, [make_row(0)])
        assert outcome.rows["succeeded"] == 1
        assert len(events(spec, "submitted")) == 1
        assert events(spec, "failed") == []
        assert_paid_once(fake)

    @pytest.mark.anyio
    async def test_unknown_task_is_resubmitted_with_the_same_uuid(self, tmp_path: Path) -> None:
        """A 500 before the task ran: getResponse does not know it, so it is resent with the same UUID."""
        spec, fake = make_spec(tmp_path, concurrency=1), FakeRunware(script=["500"])
        outcome = await run(spec, fake, [make_row(0)])
        assert outcome.rows["succeeded"] == 1
        sent = [b[0]["taskUUID"] for b in fake.requests if b[0]["taskType"] == "imageInference"]
        assert len(sent) == 2
        assert len(set(sent)) == 1
        assert_paid_once(fake)

    @pytest.mark.anyio
    async def test_permanent_error_fails_the_row_at_once(self, tmp_path: Path) -> None:
        """400 invalid parameter: failed for good after one request; other rows go on."""
        spec, fake = make_spec(tmp_path, concurrency=1), FakeRunware(script=["400"])
        outcome = await run(spec, fake, [make_row(0), make_row(1)])
        assert outcome.rows == {"succeeded": 1, "failed": 1, "pending": 0, "in_doubt": 0}
        assert outcome.exit_code() == 1
        assert [e.retryable for e in events(spec, "failed")] == [False]

    @pytest.mark.anyio
    async def test_attempts_run_out(self, tmp_path: Path) -> None:
        """Transient refusals on every attempt: exit 1 with the row pending, and the next run retries it.

        An outage must not fail rows for good: a nightly run after one would skip them forever.
        """
        spec, fake = make_spec(tmp_path, max_attempts=3), FakeRunware(script=["503"] * 3)
        outcome = await run(spec, fake, [make_row(0)])
        assert outcome.rows == {"succeeded": 0, "failed": 0, "pending": 1, "in_doubt": 0}
        assert outcome.exit_code() == 1
        assert [e.retryable for e in events(spec, "failed")] == [True, True, True]

        again = await run(spec, fake, [make_row(0)])  # the outage is over: the script ran out, "ok"
        assert again.rows["succeeded"] == 1
        assert again.exit_code() == 0
        assert_paid_once(fake)

    @pytest.mark.anyio
    async def test_retry_after_pauses_dispatching(self, tmp_path: Path) -> None:
        """A 429 with Retry-After: 2 holds the next request for at least two seconds."""
        sleeps: list[float] = []
        now = [0.0]

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            now[0] += seconds

        hooks = EngineHooks(clock=lambda: now[0], sleep=sleep, backoff=FAST.backoff, poll=FAST.poll)
        spec, fake = make_spec(tmp_path, concurrency=1), FakeRunware(script=["429ra"])
        outcome = await run(spec, fake, [make_row(0)], hooks)
        assert outcome.rows["succeeded"] == 1
        assert max(sleeps) >= 2.0


class TestStops:
    @pytest.mark.anyio
    async def test_a_key_refused_mid_run_stops_at_the_first_answer(self, tmp_path: Path) -> None:
        """401 on imageInference (the key was revoked after its check): no request after the first
        answer, at most the window's worth in flight, nothing charged; exit 5; nothing failed for good."""
        spec, fake = make_spec(tmp_path, concurrency=8), FakeRunware(script=["401"] * 100)
        outcome = await run(spec, fake, [make_row(i) for i in range(50)])
        assert 1 <= fake.inference_requests <= 8
        assert not fake.charges
        assert outcome.exit_code() == 5
        assert outcome.rows["failed"] == 0
        assert outcome.rows["pending"] == 50

    @pytest.mark.anyio
    async def test_a_refused_key_costs_no_request(self, tmp_path: Path) -> None:
        """The key is checked with the free authentication task first: refused, nothing is generated or
        recorded as sent, the run exits 5 and every row stays pending."""
        spec, fake = make_spec(tmp_path, concurrency=8), FakeRunware(key="the-right-key")
        outcome = await run(spec, fake, [make_row(i) for i in range(20)])
        assert (fake.authentications, fake.inference_requests) == (1, 0)
        assert outcome.exit_code() == 5
        assert outcome.rows["pending"] == 20
        assert events(spec, "submitted") == []
        assert KEY not in str(outcome.fatal)

    @pytest.mark.anyio
    async def test_the_key_is_checked_once_before_the_first_request(self, tmp_path: Path) -> None:
        """One authentication task, first; then the rows go out (no request sent alone to probe)."""
        spec, fake = make_spec(tmp_path), FakeRunware()
        outcome = await run(spec, fake, [make_row(i) for i in range(10)])
        assert outcome.exit_code() == 0
        assert [body[0]["taskType"] for body in fake.requests][:2] == ["authentication", "imageInference"]
        assert fake.authentications == 1

    @pytest.mark.anyio
    async def test_budget_stops_and_a_bigger_one_finishes(self, tmp_path: Path) -> None:
        """A $0.05 budget pays for 4 rows of 0.011 and exits 3; a bigger budget finishes the rest."""
        spec, fake = make_spec(tmp_path, budget_usd=0.05), FakeRunware()
        rows = [make_row(i) for i in range(10)]
        outcome = await run(spec, fake, rows)
        assert outcome.exit_code() == 3
        assert outcome.rows["succeeded"] == 4
        assert float(outcome.left_usd) == pytest.approx(6 * 0.011)
        spec2 = make_spec(tmp_path, budget_usd=1.0)
        fake2 = FakeRunware()
        outcome2 = await run(spec2, fake2, rows)
        assert outcome2.exit_code() == 0
        assert len(fake2.tasks) == 6
        assert float(outcome2.spent_usd) == pytest.approx(10 * 0.011)

    @pytest.mark.anyio
    async def test_failed_rows_give_their_reservation_back(self, tmp_path: Path) -> None:
        """Rows refused for good cost nothing: the budget still pays for four successes."""
        spec, fake = make_spec(tmp_path, budget_usd=0.05, concurrency=1), FakeRunware(script=["400", "400"])
        outcome = await run(spec, fake, [make_row(i) for i in range(10)])
        assert outcome.rows["failed"] == 2
        assert outcome.rows["succeeded"] == 4
        assert outcome.exit_code() == 3


class TestResume:
    @pytest.mark.anyio
    async def test_task_in_doubt_after_a_crash_is_recovered(self, tmp_path: Path) -> None:
        """A crash after the send: the next run records the paid result via getResponse, no new task."""
        spec, fake = make_spec(tmp_path, concurrency=1), FakeRunware(script=["timeout"])
        row = make_row(0)
        # the first run sends, loses the answer, and cannot reach getResponse: it gives up at once
        hooks_gone = EngineHooks(backoff=FAST.backoff, poll=Poll(interval=0.001, give_up_after=0.0))

        def unreachable(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            if body[0]["taskType"] == "getResponse":
                raise httpx.ConnectError("down", request=request)
            return fake.handle(request)

        first = await run_with(spec, httpx.MockTransport(unreachable), [row], hooks_gone)
        assert first.rows["in_doubt"] == 1
        assert first.exit_code() == 1
        second = await run(spec, fake, [row])
        assert second.rows["succeeded"] == 1
        assert len(events(spec, "submitted")) == 1
        assert_paid_once(fake)

    @pytest.mark.anyio
    async def test_unsent_task_in_doubt_is_resent_with_its_uuid(self, tmp_path: Path) -> None:
        """A crash between 'submitted' and the send: resent with the same taskUUID, charged once."""
        spec = make_spec(tmp_path)
        row = make_row(0)
        from pipeline.state.events import SubmittedEvent
        from pipeline.state.ids import task_uuid_for

        with open_job_state(spec.out_dir, job=spec.name) as store:
            uid = task_uuid_for(store.namespace, row.fingerprint, 1)
            submitted = SubmittedEvent.for_row(row, task_uuid=uid, attempt=1, run_id="x", estimate_usd=0.011)
            store.record(submitted)
        fake = FakeRunware()
        outcome = await run(spec, fake, [row])
        assert outcome.rows["succeeded"] == 1
        assert list(fake.tasks) == [uid]
        assert_paid_once(fake)


class TestUploads:
    @pytest.mark.anyio
    async def test_local_reference_uploaded_once_across_rows_and_runs(self, tmp_path: Path) -> None:
        """Rows sharing a local file: one imageUpload, its imageUUID in every task, and none next run."""
        ref = tmp_path / "ref.png"
        ref.write_bytes(b"\x89PNG\r\n\x1a\nfake")
        spec, fake = make_spec(tmp_path), FakeRunware()
        rows = [make_row(i, refs=(str(ref), "https://example.com/a.jpg")) for i in range(3)]
        await run(spec, fake, rows)
        assert len(fake.uploads) == 1
        refs = {tuple(t["inputs"]["referenceImages"]) for t in fake.tasks.values()}
        assert len(refs) == 1
        (uploaded, url) = next(iter(refs))
        assert url == "https://example.com/a.jpg"
        assert events(spec, "uploaded")[0].image_uuid == uploaded
        fake2 = FakeRunware()
        await run(spec, fake2, [make_row(9, refs=(str(ref),))])
        assert fake2.uploads == []


class TestRuntime:
    @pytest.mark.anyio
    async def test_max_runtime_stops_dispatching(self, tmp_path: Path) -> None:
        """Past max_runtime no new task is sent; the run exits 3 and a later run finishes."""
        now = [0.0]
        fake = FakeRunware()

        def slow(request: httpx.Request) -> httpx.Response:
            now[0] += 3600  # each answer takes an hour on the injected clock
            return fake.handle(request)

        spec = make_spec(tmp_path, concurrency=1, max_runtime="90m")
        hooks = EngineHooks(clock=lambda: now[0], backoff=FAST.backoff, poll=FAST.poll)
        rows = [make_row(i) for i in range(5)]
        outcome = await run_with(spec, httpx.MockTransport(slow), rows, hooks)
        assert outcome.exit_code() == 3
        assert 1 <= len(fake.tasks) <= 2
        assert outcome.rows["succeeded"] + outcome.rows["pending"] == 5
        later = await run(make_spec(tmp_path, concurrency=1), fake, rows)
        assert later.exit_code() == 0
        assert_paid_once(fake)


class TestUnreachable:
    @pytest.mark.anyio
    async def test_no_connection_stops_the_run_without_failing_rows(self, tmp_path: Path) -> None:
        """Connection refused: the run stops (exit 5) after max_attempts tries; every row stays pending."""
        calls = []

        def refuse(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            raise httpx.ConnectError("Connection refused", request=request)

        spec = make_spec(tmp_path, concurrency=4, max_attempts=3)
        outcome = await run_with(spec, httpx.MockTransport(refuse), [make_row(i) for i in range(20)])
        assert outcome.exit_code() == 5
        assert "cannot reach the provider" in str(outcome.fatal)
        assert outcome.rows["failed"] == 0
        assert outcome.rows["pending"] == 20
        assert len(calls) <= 3 + 4
        assert all(e.retryable for e in events(spec, "failed"))


class TestRates:
    @pytest.mark.anyio
    @pytest.mark.parametrize(("limit", "n"), [("requests_per_minute", 1), ("images_per_minute", 2)])
    async def test_per_minute_limits_pace_the_sends(self, tmp_path: Path, limit: str, n: int) -> None:
        """60 requests (or 120 images of 2-image tasks) per minute: 6 tasks take 5 s on the clock."""
        now = [0.0]

        async def sleep(seconds: float) -> None:
            now[0] += seconds

        hooks = EngineHooks(clock=lambda: now[0], sleep=sleep, backoff=FAST.backoff, poll=FAST.poll)
        spec, fake = make_spec(tmp_path, **{limit: 60 * n}), FakeRunware()
        outcome = await run(spec, fake, [make_row(i, n=n) for i in range(6)], hooks)
        assert outcome.rows["succeeded"] == 6
        assert now[0] == pytest.approx(5.0)


class TestSameContent:
    @pytest.mark.anyio
    async def test_rows_with_the_same_content_get_their_own_tasks(self, tmp_path: Path) -> None:
        """Two ids with identical requests (same fingerprint): two tasks, two distinct taskUUIDs."""
        spec, fake = make_spec(tmp_path), FakeRunware()
        a = make_row(0, prompt="the same product shot")
        b = Row(2, "other-id", a.fingerprint, a.request, {})
        outcome = await run(spec, fake, [a, b])
        assert outcome.rows["succeeded"] == 2
        submitted = events(spec, "submitted")
        assert sorted(e.attempt for e in submitted) == [1, 2]
        assert len({e.task_uuid for e in submitted}) == 2
        assert sorted(fake.charges.values()) == [1, 1]
