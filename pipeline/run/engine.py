"""The scheduler: rows in, one paid generation per row out, under one anyio task group.

    engine = Engine(spec, client, store, run_id=run_id)   # store: the job's state (pipeline.state)
    outcome = await engine.run(batches)      # batches: ManifestBatch iterator (read in a thread)

First every task the state left in doubt is reconciled (``pipeline.run.reconcile``); then manifest batches are
classified against the state (one batched lookup each, in a thread with a read connection of its own) and
the rows to send stream through a bounded queue to row tasks. The run's first request is the provider's
free ``authentication`` task: a bad key costs nothing, and the whole window opens once it passes (a run
with nothing to send sends nothing). A row task reserves its estimated cost, waits for the pause gate, the
token buckets and a place in the adaptive window, commits ``submitted``, sends, and records the verdict.
Every event goes through one writer (``pipeline.run.recorder``): ``submitted`` is committed before the send,
verdicts go with the next group commit; the loop reads the committed state through a connection of its
own, and counts each finished row once its events are committed.
Transient refusals retry with a new taskUUID (``pipeline.run.retry``); an answer that never came is settled
with ``getResponse`` first, so a row is paid for at most once. Dispatching stops on a limit (budget,
runtime), a fatal provider error or a signal; in-flight work drains.

A provider answer that refuses the model itself (``ModelRefusedError``, or ``ModelUnavailableError``
``UNAVAILABLE_LIMIT`` times in a row) stops only that model: its rows are not sent again in this run, they
stay pending, and the run exits 5 (``Outcome.models``). Requests already in flight are not cancelled, and
its tasks in doubt are still asked about (they may have been paid) but never resubmitted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, NoReturn, Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from pipeline.config.jobspec import JobSpec
from pipeline.config.profiles import load_model_profile
from pipeline.errors import (
    FatalProviderError,
    PermanentError,
    ProviderError,
    TransientError,
)
from pipeline.rows import ImageResult, Row
from pipeline.run.budget import Budget, estimate_usd
from pipeline.run.downloads import pending_downloads
from pipeline.run.earlier_models import generated_by_earlier_model, settings_of
from pipeline.run.fetcher import Fetcher
from pipeline.run.limits import AdaptiveWindow, Clock, PauseGate, Sleep, Slot, TokenBucket
from pipeline.run.outcome import Outcome, Stop
from pipeline.run.progress import Tally
from pipeline.run.reconcile import Poll, StillInDoubtError, row_from_submitted, settle
from pipeline.run.recorder import Recorder
from pipeline.run.retry import Backoff, attempts, retry_policy
from pipeline.run.uploads import ReferenceUploader, Resolved, is_reference_refusal
from pipeline.run.verdicts import failed_event, succeeded_event
from pipeline.runware.client import (
    UNREACHABLE,
    InDoubtError,
    InferenceTask,
    RunwareClient,
    TaskConflictError,
    inference_task,
    is_model_refusal,
    is_overload,
)
from pipeline.state import Store
from pipeline.state.events import Event, SubmittedEvent
from pipeline.state.ids import task_uuid_for
from pipeline.state.rule import PENDING, SUCCEEDED, PendingDownload, image_extension

if TYPE_CHECKING:  # polars: read by the runner, not here
    from pipeline.manifest.reader import Reject

__all__ = ["Engine", "EngineHooks", "RowBatch"]


class RowBatch(Protocol):
    """What the engine reads of a batch of manifest rows (``pipeline.manifest.reader.ManifestBatch``)."""

    @property
    def rows(self) -> Sequence[Row]: ...

    @property
    def rejects(self) -> Sequence[Reject]: ...

    @property
    def done(self) -> Mapping[str, int]: ...  # rows left out as finished, by model


@dataclass
class EngineHooks:
    """Time, randomness and tuning, injectable for tests."""

    clock: Clock = anyio.current_time
    sleep: Sleep | None = None  # default: anyio.sleep, cut short when dispatching stops
    backoff: Backoff = field(default_factory=Backoff)
    poll: Poll | None = None  # default: give up on a silent task after 2 * request_timeout_s + 60 s
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
        store: Store,
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
        self.store = store  # written by the recorder only (in worker threads, one commit at a time)
        self._view = Store.open(store.path)  # this loop's reads: what is committed
        self.run_id = run_id
        self.tally = tally or Tally(self.hooks.clock)
        self.outcome = Outcome()
        self._recorder = Recorder(store, totals=self.outcome.this_run, on_commit=self._count_finished)
        self._namespace = store.namespace
        self._numbered: dict[str, int] = {}  # fingerprint -> attempt numbered but not committed yet
        self._finished: deque[tuple[int, str, str, str]] = deque()  # (mark, id, fingerprint, model)
        limits = spec.limits
        self.window = AdaptiveWindow(limits.concurrency)  # the key is checked first: no probe needed
        self.tally.requests_in_flight = lambda: self.window.in_flight
        self.gate = PauseGate(clock=self.hooks.clock, sleep=self._nap)
        self._requests = TokenBucket(limits.requests_per_minute, clock=self.hooks.clock, sleep=self._nap)
        self._images = TokenBucket(limits.images_per_minute, clock=self.hooks.clock, sleep=self._nap)
        limit = None if limits.budget_usd is None else Decimal(str(limits.budget_usd))
        spent = store.spent_usd()
        self.budget = Budget(limit, spent)
        self.tally.spent_usd = spent
        self._uploader = ReferenceUploader(client, self._view.upload_for, self.record, upload=self._upload)
        self._rows = anyio.Semaphore(limits.concurrency * 2 + 8)  # rows in progress: memory stays flat
        self._halted = anyio.Event()
        self._connect_failures = 0  # consecutive requests that found no connection
        self._key_check: anyio.Event | None = None  # set once the API key was checked
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

    def record(self, event: Event) -> None:
        """Queue ``event`` for the state (committed with the next group; see ``pipeline.run.recorder``)."""
        self._recorder.add(event)

    # -- the run ---------------------------------------------------------------------------------------

    async def run(self, batches: Iterator[RowBatch]) -> Outcome:
        """Reconcile what is in doubt, then stream the manifest; the outcome (counts, stop reason). Every
        event is committed when this returns, even when it is cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._recorder.run)
                if self._deadline < math.inf:
                    tg.start_soon(self._watch_deadline)
                await self._reconcile_all()
                await self._recorder.flushed()  # the manifest is classified against committed state
                await self._stream(batches)
                await self._recorder.flushed()
                tg.cancel_scope.cancel()
        finally:
            self._count_finished(None)  # rows a cancellation cut short, by what was committed
            self._view.close()
        self.outcome.spent_usd = self.budget.spent
        return self.outcome

    async def _key_checked(self) -> None:
        """Wait for the API key check, starting it on the first call: the run's first request is the
        free ``authentication`` task, so a bad key costs nothing and the window opens at once after it
        (a run with nothing to send sends nothing). Raises ``_Stopped`` if the key was refused."""
        if self._key_check is None:
            self._key_check = anyio.Event()
            try:
                await self._authenticate()
            finally:
                self._key_check.set()
        await self._key_check.wait()
        if self.halted:
            raise _Stopped

    async def _authenticate(self) -> None:
        """Check the API key: a refused key, or a provider that cannot be reached, stops the run."""
        policy = retry_policy(self.spec.limits.max_attempts, backoff=self.hooks.backoff, sleep=self._nap)
        try:
            async for attempt in policy:
                with attempt:
                    await self._client.authenticate()
        except FatalProviderError as exc:
            self.stop(Stop.FATAL, exc)
        except ProviderError as exc:
            what = "cannot reach" if exc.code == UNREACHABLE else "cannot check the API key with"
            reason = f"{what} the provider at {self._client.endpoint}: {exc.message}"
            self.stop(Stop.FATAL, FatalProviderError(message=reason, code=exc.code, status=exc.status))

    def _count_finished(self, committed: int | None) -> None:
        """Count the rows whose last events are committed (all of them: ``None``) by the state's rule,
        with one batched lookup."""
        done: list[tuple[str, str, str]] = []
        while self._finished and (committed is None or self._finished[0][0] <= committed):
            _, id, fingerprint, model = self._finished.popleft()
            done.append((id, fingerprint, model))
        if not done:
            return
        states = self._view.row_states([(id, fp) for id, fp, _ in done])
        for id, fingerprint, model in done:
            self.outcome.count(states.get((id, fingerprint), PENDING), model)

    async def _watch_deadline(self) -> None:
        await self._nap(max(0.0, self._deadline - self.hooks.clock()))
        if self.hooks.clock() >= self._deadline:
            self.stop(Stop.RUNTIME)

    async def _reconcile_all(self) -> None:
        async with anyio.create_task_group() as tg:
            if self.fetcher is not None:  # downloads a previous run could not finish
                pending = pending_downloads(self._view)
                tg.start_soon(self.fetcher.fetch_all, pending, self.spec.limits.concurrency)
            for submitted in self._view.in_doubt():
                await self._rows.acquire()
                tg.start_soon(self._reconcile_one, submitted)

    async def _reconcile_one(self, submitted: SubmittedEvent) -> None:
        row = row_from_submitted(submitted)
        reserved = submitted.estimate_usd or estimate_usd(row.request)
        self.budget.force_reserve(reserved)
        self.tally.in_flight += 1
        try:
            await self._verdict(row, submitted.task_uuid, reserved, send_first=False, last=False)
        except (_RowFailed, _Stopped, _ModelStopped, StillInDoubtError, TransientError):
            self.budget.release(reserved)
        finally:
            self.tally.in_flight -= 1
            self._rows.release()

    async def _stream(self, batches: Iterator[RowBatch]) -> None:
        send, receive = anyio.create_memory_object_stream[Row](self.hooks.queue_size)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._produce, batches, send)
            async with receive:
                async for row in receive:
                    await self._dispatch(row, tg)

    async def _produce(self, batches: Iterator[RowBatch], send: MemoryObjectSendStream[Row]) -> None:
        reader = await anyio.to_thread.run_sync(Store.open, self.store.path)  # this thread's own
        try:
            async with send:
                while (got := await anyio.to_thread.run_sync(self._next_batch, batches, reader)) is not None:
                    batch, states = got
                    self.outcome.rejects.extend(batch.rejects)
                    self._count_done(batch.done)
                    for row in batch.rows:
                        self.tally.seen += 1
                        state = states.get(row.id)
                        if state in (None, PENDING):
                            await send.send(row)
                        else:
                            self.tally.skipped += 1
                            self.outcome.count(state, row.request.model)
                self.tally.manifest_done = True
                self.outcome.manifest_done = True
        finally:
            reader.close()

    def _count_done(self, done: Mapping[str, int]) -> None:
        """Rows the manifest reader left out as finished (``ManifestBatch.done``, by model)."""
        for model, rows in done.items():
            self.tally.seen += rows
            self.tally.skipped += rows
            self.outcome.count(SUCCEEDED, model, rows)

    def _next_batch(
        self, batches: Iterator[RowBatch], reader: Store
    ) -> tuple[RowBatch, dict[str, str]] | None:
        """The next manifest batch and the state of its rows the state has seen, by id (in a worker
        thread: reading the manifest, one batched lookup, and maybe hashing local reference files)."""
        batch = next(batches, None)
        if batch is None:
            return None
        found = reader.row_states([(row.id, row.fingerprint) for row in batch.rows])
        states = {id: state for (id, _), state in found.items()}
        if self.spec.resume.keep_earlier_models:
            for row in batch.rows:
                if row.id not in states and self._carried(reader, row):
                    states[row.id] = SUCCEEDED  # an earlier model generated it: never sent, budgets hold
        return batch, states

    @staticmethod
    def _carried(reader: Store, row: Row) -> bool:
        """Whether an earlier model already generated ``row`` (``[resume] keep_earlier_models``)."""
        successes = [(fp, settings_of(s.request)) for fp, s in reader.successes_of(row.id)]
        return bool(successes) and generated_by_earlier_model(row, successes)

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
            # counted once its events are committed (``_count_finished``), by the state's rule
            self._finished.append((self._recorder.added, row.id, row.fingerprint, row.request.model))

    async def _generate(self, row: Row, reserved: Decimal) -> None:
        max_attempts = self.spec.limits.max_attempts
        policy = attempts(max_attempts, backoff=self.hooks.backoff, sleep=self._nap)
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
        await self._key_checked()
        try:
            refs = await self._uploader.resolve(row.request.reference_images)
        except ProviderError as exc:
            self._refused(row, task_uuid or "", exc, last)
        if send_first:
            await self._pace(row)
        task_uuid = task_uuid or ""
        try:
            async with self.window.slot() as slot:
                attempt = 0
                if send_first:
                    attempt = self._attempt_to_send(row)
                    task_uuid = task_uuid_for(self._namespace, row.fingerprint, attempt)
                task = inference_task(
                    row.request,
                    task_uuid,
                    refs.wire,
                    profile=load_model_profile(row.request.model),
                    delivery=self._client.delivery,
                )
                images = await self._exchange(row, task, attempt, reserved, slot, send_first=send_first)
        except _FatalInDoubt as exc:
            self.stop(Stop.FATAL, exc.error)  # no verdict on the task: it stays in doubt
            raise _Stopped from None
        except ProviderError as exc:
            if reupload and self._stale_uploads(row, task_uuid, refs, exc):
                raise _StaleUploads from None
            self._refused(row, task_uuid, exc, last)
        self._succeeded(row, task_uuid, images, reserved)
        await self._download(row, task_uuid, images)

    def _attempt_to_send(self, row: Row) -> int:
        """In a place of the window, just before a send: the attempt number of the row's new task, unless
        the run stopped or the row's model was refused while it waited (then it is not sent)."""
        self._check_deadline()  # the wait for a place may have outlasted max_runtime
        if self.halted:
            raise _Stopped
        self._check_model(row)
        return self._next_attempt(row.fingerprint)

    async def _exchange(
        self, row: Row, task: InferenceTask, attempt: int, reserved: Decimal, slot: Slot, *, send_first: bool
    ) -> list[ImageResult]:
        """Send the task (unless only settling it) and settle it when no images came; its images."""
        try:
            images = await self._send(row, task, attempt, reserved) if send_first else []
            return images or await self._settle(task, row)
        except ProviderError as exc:
            if is_overload(exc) and not is_model_refusal(exc):  # one model's 503 is not the account's
                slot.backoff()  # overload: the other models keep their window
            raise

    async def _download(self, row: Row, task_uuid: str, images: list[ImageResult]) -> None:
        """Fetch the images of the row's success (its first: a row is only sent until it succeeds)."""
        if self.fetcher is None:
            return
        for image in images:
            ext = image_extension(row.request.output_format, image.image_url)  # the state's rule
            await self.fetcher.fetch(
                PendingDownload(
                    row.id, row.fingerprint, task_uuid, image.index, image.image_uuid, image.image_url, ext
                )
            )

    def _next_attempt(self, fingerprint: str) -> int:
        """The attempt number of a new task of ``fingerprint``: never one committed, nor one numbered
        for another row sharing the fingerprint whose ``submitted`` is still being committed."""
        attempt = max(self._view.next_attempt(fingerprint), self._numbered.get(fingerprint, 0) + 1)
        self._numbered[fingerprint] = attempt
        return attempt

    async def _send(
        self, row: Row, task: InferenceTask, attempt: int, reserved: Decimal
    ) -> list[ImageResult]:
        submitted = SubmittedEvent.for_row(
            row, task_uuid=task.task_uuid, attempt=attempt, run_id=self.run_id, estimate_usd=reserved
        )
        try:
            await self._recorder.commit(submitted)  # durable before the request leaves
        finally:
            if self._numbered.get(row.fingerprint) == attempt:
                del self._numbered[row.fingerprint]  # the state knows it now (or it was never sent)
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

    async def _settle(self, task: InferenceTask, row: Row) -> list[ImageResult]:
        async def resubmit() -> list[ImageResult]:
            if row.request.model in self.outcome.models:  # refused: the task stays in doubt, and the
                raise StillInDoubtError(task.task_uuid)  # next run asks about it again
            return await self._client.infer(task)

        try:
            return await settle(
                self._client,
                task.task_uuid,
                row.request.number_results,
                resubmit,
                poll=self._poll,
                clock=self.hooks.clock,
                sleep=anyio.sleep,
            )
        except FatalProviderError as exc:
            raise _FatalInDoubt(exc) from None

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
            self._failed_row()
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
            self._failed_row()

    def _failed_row(self) -> None:
        """The row failed in this run (for good, or out of attempts)."""
        self.tally.failed += 1
        self.outcome.this_run.failed += 1

    def _succeeded(self, row: Row, task_uuid: str, images: list[ImageResult], reserved: Decimal) -> None:
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
