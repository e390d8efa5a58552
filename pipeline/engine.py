"""The scheduler: rows in, one paid generation per row out, under one anyio task group.

    engine = Engine(spec, client, ledger, state, run_id=run_id)
    outcome = await engine.run(batches)      # batches: ManifestBatch iterator (read in a thread)

First every task the ledger left in doubt is reconciled (``pipeline.reconcile``); then manifest rows stream
through a bounded queue to row tasks. A row task reserves its estimated cost, waits for the pause gate, the
token buckets and a place in the adaptive window, writes ``submitted``, sends, and records the verdict.
Transient refusals retry with a new taskUUID (``pipeline.retry``); an answer that never came is settled
with ``getResponse`` first, so a row is paid for at most once. Dispatching stops on a limit (budget,
runtime), a fatal provider error or a signal; in-flight work drains.

A provider answer that refuses the model itself (``ModelRefusedError``, or ``ModelUnavailableError``
``UNAVAILABLE_LIMIT`` times in a row) stops only that model: its rows are not sent again in this run, they
stay pending, and the run exits 5 (``Outcome.models``). Requests already in flight are not cancelled, and
its tasks in doubt are still asked about (they may have been paid) but never resubmitted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn

import anyio
from anyio.abc import TaskGroup

from pipeline.budget import Budget, estimate_usd
from pipeline.errors import (
    FatalProviderError,
    PermanentError,
    ProviderError,
    TransientError,
)
from pipeline.events import SubmittedEvent
from pipeline.fetcher import Fetcher
from pipeline.jobspec import JobSpec
from pipeline.ledger import LedgerState, LedgerWriter, task_uuid_for
from pipeline.ledger_state import SUCCEEDED
from pipeline.limits import AdaptiveWindow, Clock, PauseGate, Sleep, TokenBucket
from pipeline.outcome import Outcome, Stop
from pipeline.profiles import load_model_profile
from pipeline.progress import Tally
from pipeline.reconcile import Poll, StillInDoubtError, row_from_submitted, settle
from pipeline.retry import Backoff, retry_policy
from pipeline.rows import Row
from pipeline.runware import (
    UNREACHABLE,
    GeneratedImage,
    InDoubtError,
    RunwareClient,
    TaskConflictError,
    inference_task,
    is_model_refusal,
    is_overload,
)
from pipeline.uploads import ReferenceUploader, Resolved, is_reference_refusal
from pipeline.verdicts import failed_event, succeeded_event

__all__ = ["Engine", "EngineHooks"]


@dataclass
class EngineHooks:
    """Time, randomness and tuning, injectable for tests."""

    clock: Clock = anyio.current_time
    sleep: Sleep | None = None  # default: anyio.sleep, cut short when dispatching stops
    backoff: Backoff = field(default_factory=Backoff)
    poll: Poll | None = None  # default: give up on a silent task after 2 * request_timeout_s + 60 s
    delivery: str = "sync"
    queue_size: int = 256


class _Stopped(Exception):
    """Dispatching stopped before this row could be sent (again)."""


class _FatalInDoubt(Exception):
    """A fatal answer while settling a task: stop the run, leave the task in doubt."""

    def __init__(self, error: FatalProviderError) -> None:
        super().__init__(str(error))
        self.error = error


class _RowFailed(Exception):
    """The row failed for good (already recorded)."""


class _ModelStopped(Exception):
    """The provider refused the row's model: the row is not sent (again) and stays pending."""


class _StaleUploads(Exception):
    """The provider refused reference imageUUIDs an earlier run uploaded: upload them again, send again."""


class Engine:
    """One run of one job (see the module docstring)."""

    def __init__(
        self,
        spec: JobSpec,
        client: RunwareClient,
        ledger: LedgerWriter,
        state: LedgerState,
        *,
        run_id: str,
        tally: Tally | None = None,
        hooks: EngineHooks | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.spec = spec
        self.hooks = hooks or EngineHooks()
        self._poll = self.hooks.poll or Poll(give_up_after=2 * spec.limits.request_timeout_s + 60)
        self._client = client
        self.fetcher = fetcher
        self._ledger = ledger
        self.state = state
        self.run_id = run_id
        self.tally = tally or Tally(self.hooks.clock)
        limits = spec.limits
        self.window = AdaptiveWindow(limits.concurrency, probe=True)
        self.tally.requests_in_flight = lambda: self.window.in_flight
        self.gate = PauseGate(clock=self.hooks.clock, sleep=self._nap)
        self._requests = TokenBucket(limits.requests_per_minute, clock=self.hooks.clock, sleep=self._nap)
        self._images = TokenBucket(limits.images_per_minute, clock=self.hooks.clock, sleep=self._nap)
        limit = None if limits.budget_usd is None else Decimal(str(limits.budget_usd))
        self.budget = Budget(limit, state.spent_usd)
        self.tally.spent_usd = state.spent_usd
        self._uploader = ReferenceUploader(client, state.uploads, self.record, upload=self._upload)
        self._rows = anyio.Semaphore(limits.concurrency * 2 + 8)  # rows in progress: memory stays flat
        self._halted = anyio.Event()
        self._connect_failures = 0  # consecutive requests that found no connection
        self.outcome = Outcome()
        self._deadline = math.inf if limits.max_runtime is None else self.hooks.clock() + limits.max_runtime

    # -- control -------------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """No new row is dispatched (budget, runtime, provider, signal)."""
        return self.outcome.stop is not None

    @property
    def halted(self) -> bool:
        """Nothing new is sent at all, not even rows already dispatched (all but a budget stop)."""
        return self._halted.is_set()

    def stop(self, reason: Stop, error: FatalProviderError | None = None) -> None:
        """Stop dispatching; in-flight work drains. A budget stop lets rows already reserved go on;
        any other reason halts every new send, and outranks a budget stop for the exit code."""
        if self.outcome.stop is None or (self.outcome.stop is Stop.BUDGET and reason is not Stop.BUDGET):
            self.outcome.stop = reason
            self.outcome.fatal = error
        if reason is not Stop.BUDGET:
            self._halted.set()

    async def _nap(self, seconds: float) -> None:
        """A sleep that ends early when the run halts."""
        if self.hooks.sleep is not None:
            await self.hooks.sleep(seconds)
            return
        with anyio.move_on_after(seconds):
            await self._halted.wait()

    def record(self, event: Any) -> None:
        """Append to the ledger (flushed on return) and fold into the state."""
        self._ledger.append(event)
        self.state.apply(event)

    # -- the run ---------------------------------------------------------------------------------------

    async def run(self, batches: Iterator[Any]) -> Outcome:
        """Reconcile what is in doubt, then stream the manifest; the outcome (counts, stop reason)."""
        async with anyio.create_task_group() as tg:
            if self._deadline < math.inf:
                tg.start_soon(self._watch_deadline)
            await self._reconcile_all()
            await self._stream(batches)
            tg.cancel_scope.cancel()
        self.outcome.spent_usd = self.budget.spent
        return self.outcome

    async def _watch_deadline(self) -> None:
        await self._nap(max(0.0, self._deadline - self.hooks.clock()))
        if self.hooks.clock() >= self._deadline:
            self.stop(Stop.RUNTIME)

    async def _reconcile_all(self) -> None:
        async with anyio.create_task_group() as tg:
            if self.fetcher is not None:  # downloads a previous run could not finish
                pending = list(self.state.undownloaded.values())
                tg.start_soon(self.fetcher.fetch_all, pending, self.spec.limits.concurrency)
            for submitted in self.state.in_doubt:
                await self._rows.acquire()
                tg.start_soon(self._reconcile_one, submitted)

    async def _reconcile_one(self, submitted: SubmittedEvent) -> None:
        row = row_from_submitted(submitted)
        reserved = Decimal(str(submitted.estimate_usd or 0)) or estimate_usd(row.request)
        self.budget.force_reserve(reserved)
        self.tally.in_flight += 1
        try:
            await self._verdict(row, submitted.task_uuid, reserved, send_first=False, last=False)
        except (_RowFailed, _Stopped, _ModelStopped, StillInDoubtError, TransientError):
            self.budget.release(reserved)
        finally:
            self.tally.in_flight -= 1
            self._rows.release()

    async def _stream(self, batches: Iterator[Any]) -> None:
        send, receive = anyio.create_memory_object_stream[Row](self.hooks.queue_size)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._produce, batches, send)
            async with receive:
                async for row in receive:
                    await self._dispatch(row, tg)

    async def _produce(self, batches: Iterator[Any], send: Any) -> None:
        async with send:
            while (batch := await anyio.to_thread.run_sync(next, batches, None)) is not None:
                self.outcome.rejects.extend(batch.rejects)
                carried = await anyio.to_thread.run_sync(self._carried, batch.rows)
                for row in batch.rows:
                    self.tally.seen += 1
                    state = self.state.row_state(row.id, row.fingerprint)
                    if state is None and row.id in carried:
                        state = SUCCEEDED  # an earlier model generated it: never sent, so budgets hold
                    if state in (None, "pending"):
                        await send.send(row)
                    else:
                        self.tally.skipped += 1
                        self.outcome.count(state, row.request.model)
            self.tally.manifest_done = True
            self.outcome.manifest_done = True

    def _carried(self, rows: list[Row]) -> set[str]:
        """Ids of ``rows`` an earlier model already generated, when ``[resume] keep_earlier_models`` is
        on (in a worker thread: the check may hash local reference files)."""
        if not self.spec.resume.keep_earlier_models:
            return set()
        return {row.id for row in rows if self.state.generated_by_earlier_model(row)}

    async def _dispatch(self, row: Row, tg: TaskGroup) -> None:
        estimate = estimate_usd(row.request)
        if row.request.model in self.outcome.models:  # refused by the provider: not even reserved
            self.outcome.count("pending", row.request.model)
            self.outcome.models.leave(row.request.model, estimate)
            return
        self._check_deadline()
        if not self.stopping and not await self.budget.reserve(estimate, give_up=lambda: self.halted):
            self.stop(Stop.BUDGET)
        if self.stopping:
            self.outcome.count("pending")
            self.outcome.left_usd += estimate
            return
        self._update_mean(estimate)
        await self._rows.acquire()
        tg.start_soon(self._row_task, row, estimate)

    def _update_mean(self, estimate: Decimal) -> None:
        n = self.tally.seen or 1
        self.tally.mean_estimate_usd += (estimate - self.tally.mean_estimate_usd) / n

    # -- one row ---------------------------------------------------------------------------------------

    async def _row_task(self, row: Row, reserved: Decimal) -> None:
        self.tally.in_flight += 1
        paid = False
        try:
            await self._generate(row, reserved)  # returns only on success (which settles the budget)
            paid = True
        except _Stopped:
            self.outcome.left_usd += reserved
        except _ModelStopped:
            self.outcome.models.leave(row.request.model, reserved)
        except (_RowFailed, StillInDoubtError, TransientError):
            pass
        finally:
            if not paid:
                self.budget.release(reserved)
            self.tally.in_flight -= 1
            self._rows.release()
            self.outcome.count(self.state.row_state(row.id, row.fingerprint) or "pending", row.request.model)

    async def _generate(self, row: Row, reserved: Decimal) -> None:
        max_attempts = self.spec.limits.max_attempts
        policy = retry_policy(max_attempts, backoff=self.hooks.backoff, sleep=self._nap)
        async for attempt in policy:
            with attempt:
                if self.halted:
                    raise _Stopped
                self._check_model(row)
                last = attempt.retry_state.attempt_number >= max_attempts
                try:
                    await self._verdict(row, None, reserved, send_first=True, last=last, reupload=True)
                except _StaleUploads:  # refused, so not paid: once more, as a new attempt
                    await self._verdict(row, None, reserved, send_first=True, last=last)

    async def _pace(self, row: Row) -> None:
        await self.gate.wait()
        await self._requests.acquire()
        await self._images.acquire(row.request.number_results)
        self._check_deadline()
        if self.halted:
            raise _Stopped
        self._check_model(row)

    def _check_model(self, row: Row) -> None:
        """Raise ``_ModelStopped`` when the provider has refused the row's model in this run."""
        if row.request.model in self.outcome.models:
            raise _ModelStopped

    def _check_deadline(self) -> None:
        if self.hooks.clock() >= self._deadline:
            self.stop(Stop.RUNTIME)

    async def _verdict(
        self,
        row: Row,
        task_uuid: str | None,
        reserved: Decimal,
        *,
        send_first: bool,
        last: bool,
        reupload: bool = False,
    ) -> None:
        """Send (or only settle) one task and record its verdict; raises to retry, fail or stop.
        ``reupload``: raise ``_StaleUploads`` if the provider refuses an earlier run's uploads."""
        try:
            refs = await self._uploader.resolve(row.request.reference_images)
        except ProviderError as exc:
            self._refused(row, task_uuid or "", exc, last)
        if send_first:
            await self._pace(row)
        task_uuid = task_uuid or ""
        try:
            async with self.window.slot() as slot:
                if send_first and self.halted:
                    raise _Stopped  # stopped while waiting for a place in the window
                if send_first:
                    self._check_model(row)  # its model was refused while it waited: not sent
                    # numbered here, with no await before "submitted" is recorded:
                    attempt = self.state.next_attempt(row.fingerprint)  # rows sharing a fingerprint
                    task_uuid = task_uuid_for(self._namespace, row.fingerprint, attempt)  # never collide
                task = inference_task(
                    row.request,
                    task_uuid,
                    refs.wire,
                    profile=load_model_profile(row.request.model),
                    delivery=self.hooks.delivery,
                )
                try:
                    images = await self._send(row, task, reserved) if send_first else []
                    if not images:
                        images = await self._settle(task, row)
                except ProviderError as exc:
                    if is_overload(exc) and not is_model_refusal(exc):  # one model's 503 is not the
                        slot.backoff()  # account's overload: the other models keep their window
                    raise
        except _FatalInDoubt as exc:
            self.stop(Stop.FATAL, exc.error)  # no verdict on the task: it stays in doubt
            raise _Stopped from None
        except ProviderError as exc:
            if reupload and self._stale_uploads(row, task_uuid, refs, exc):
                raise _StaleUploads from None
            self._refused(row, task_uuid, exc, last)
        self._succeeded(row, task_uuid, images, reserved)
        await self._download(task_uuid, len(images))

    async def _download(self, task_uuid: str, count: int) -> None:
        if self.fetcher is None:
            return
        for index in range(count):
            pending = self.state.undownloaded.get((task_uuid, index))
            if pending is not None:
                await self.fetcher.fetch(pending)

    async def _send(self, row: Row, task: dict[str, Any], reserved: Decimal) -> list[GeneratedImage]:
        submitted = SubmittedEvent.for_row(
            row,
            task_uuid=task["taskUUID"],
            attempt=self.state.next_attempt(row.fingerprint),
            run_id=self.run_id,
            estimate_usd=reserved,
        )
        self.record(submitted)
        try:
            images = await self._client.infer(task)
        except (InDoubtError, TaskConflictError):
            return []  # no verdict: settle it with getResponse before anything else
        except ProviderError as exc:
            if exc.code != UNREACHABLE:
                self._answered()
            if exc.retry_after:
                self.gate.pause_for(exc.retry_after)
            raise
        self._answered()
        return images

    def _answered(self) -> None:
        self.window.on_answer()
        self._connect_failures = 0

    async def _settle(self, task: dict[str, Any], row: Row) -> list[GeneratedImage]:
        async def resubmit() -> list[GeneratedImage]:
            if row.request.model in self.outcome.models:  # refused: the task stays in doubt, and the
                raise StillInDoubtError(task["taskUUID"])  # next run asks about it again
            return await self._client.infer(task)

        try:
            return await settle(
                self._client,
                task["taskUUID"],
                row.request.number_results,
                resubmit,
                poll=self._poll,
                clock=self.hooks.clock,
                sleep=anyio.sleep,
            )
        except FatalProviderError as exc:
            raise _FatalInDoubt(exc) from None

    @property
    def _namespace(self) -> str:
        assert self.state.namespace is not None
        return self.state.namespace

    # -- verdicts --------------------------------------------------------------------------------------

    def _refused(self, row: Row, task_uuid: str, exc: ProviderError, last: bool) -> NoReturn:
        """A definite refusal or failure: record it, then retry (raise), fail the row or stop the run."""
        if isinstance(exc, FatalProviderError):
            self._fail(row, task_uuid, exc, last=False)
            self.stop(Stop.FATAL, exc)
            raise _Stopped from None
        if self.outcome.models.judge(load_model_profile(row.request.model), exc):
            self._fail(row, task_uuid, exc, last=False)  # not the row's fault: it stays pending
            raise _ModelStopped from None
        if exc.code == UNREACHABLE:
            self._unreachable(row, task_uuid, exc)
        for_good = isinstance(exc, PermanentError)
        self._fail(row, task_uuid, exc, last=for_good)
        if isinstance(exc, TransientError) and not last:
            raise exc
        if not for_good:
            # Out of attempts on transient errors (an outage): the row stays pending, so tonight's
            # run exits 1 and tomorrow's retries it, instead of skipping it forever.
            self.tally.failed += 1
        raise _RowFailed from None

    def _stale_uploads(self, row: Row, task_uuid: str, refs: Resolved, exc: ProviderError) -> bool:
        """Refused over references an earlier run uploaded (the provider may have dropped them): the
        attempt is recorded as retryable and those uploads forgotten for this run."""
        if not (refs.earlier and is_reference_refusal(exc)):
            return False
        self._fail(row, task_uuid, exc, last=False)
        self._uploader.forget(refs.earlier)
        return True

    def _unreachable(self, row: Row, task_uuid: str, exc: ProviderError) -> NoReturn:
        """No connection at all: never a row's fault, so it never fails the row for good; after
        ``max_attempts`` in a row with no answer in between, the run stops (exit 5)."""
        self._fail(row, task_uuid, exc, last=False)
        self._connect_failures += 1
        if self._connect_failures >= self.spec.limits.max_attempts:
            reason = f"cannot reach the provider at {self._client.endpoint}: {exc.message}"
            self.stop(Stop.FATAL, FatalProviderError(message=reason, code=UNREACHABLE))
        if self.halted:
            raise _Stopped from None
        raise exc

    def _fail(self, row: Row, task_uuid: str, exc: ProviderError, *, last: bool) -> None:
        self.record(failed_event(row, task_uuid, self.run_id, exc, retryable=not last))
        if last:
            self.tally.failed += 1

    def _succeeded(self, row: Row, task_uuid: str, images: list[GeneratedImage], reserved: Decimal) -> None:
        event, cost = succeeded_event(row, task_uuid, self.run_id, images)
        self.record(event)
        self.budget.settle(reserved, cost)
        self.outcome.models.served(row.request.model)
        self.tally.spent_usd = self.budget.spent
        self.tally.done += 1
        self.tally.images += len(images)

    async def _upload(self, image: str) -> str:
        async for attempt in retry_policy(self.spec.limits.max_attempts, backoff=self.hooks.backoff):
            with attempt:
                return await self._client.upload(image)
        raise AssertionError("unreachable")
