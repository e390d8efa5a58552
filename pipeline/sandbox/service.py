"""The sandbox's behaviour, independent of HTTP: one POST /v1 body in, one ``Answer`` out.

    sandbox = Sandbox(SandboxSettings(), task_group)
    answer = await sandbox.handle(body, authorization_header)   # status, JSON body, headers, fault

Accepted tasks run in the sandbox's own task group, not in the request's, so a task keeps running (and is
charged when it completes) when its client goes away.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio
from anyio.abc import TaskGroup

from pipeline.config.profiles import model_profiles
from pipeline.sandbox.billing import Billing
from pipeline.sandbox.faults import FaultDice
from pipeline.sandbox.images import Images
from pipeline.sandbox.settings import SandboxSettings
from pipeline.sandbox.store import Store, TaskRecord
from pipeline.sandbox.uploads import upload_image
from pipeline.sandbox.validation import InferenceTask, check_task_uuid, validate_inference
from pipeline.sandbox.wire import (
    WireError,
    conflict,
    envelope,
    forbidden,
    insufficient_credits,
    invalid_api_key,
    invalid_parameter,
    model_refused,
    transient,
)

__all__ = ["Answer", "Sandbox"]

_REFUSALS = {"429": 429, "429-retry-after": 429, "500": 500, "503": 503, "504": 504}
_AFTER = frozenset({"hang", "drop", "malformed"})


@dataclass(slots=True)
class Answer:
    """An HTTP answer; ``fault`` (hang, drop, malformed) tells the transport how to spoil it."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    fault: str | None = None


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def error_answer(error: WireError, headers: list[tuple[bytes, bytes]] | None = None) -> Answer:
    return Answer(error.status, _json(envelope(errors=[error.item()])), headers or [])


def _api_key(tasks: list[Any], authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    first = tasks[0] if tasks else None
    if isinstance(first, dict) and first.get("taskType") == "authentication":
        key = first.get("apiKey")
        return key if isinstance(key, str) and key else None
    return None


class SandboxClosing(Exception):
    """The sandbox is shutting down before the task finished."""


class Sandbox:
    """Settings, fault dice, billing, task store and images of one running sandbox."""

    def __init__(self, settings: SandboxSettings, task_group: TaskGroup) -> None:
        self.settings = settings
        self.dice = FaultDice(settings)
        self.billing = Billing(None if settings.balance_usd is None else Decimal(str(settings.balance_usd)))
        self.store = Store()
        self.images = Images(self.store)
        self.base_url = ""
        self.closing = anyio.Event()
        self.counters: Counter[str] = Counter()
        self._task_group = task_group
        self._in_flight = 0
        self._reserved = Decimal(0)

    # -- administration ---------------------------------------------------------------------------------

    def configure(self, changes: dict[str, Any]) -> None:
        """Apply ``POST /sandbox/faults`` changes (validated; the dice are re-seeded)."""
        self.settings = self.settings.updated(changes)
        self.dice = FaultDice(self.settings)
        if "balance_usd" in changes:
            usd = self.settings.balance_usd
            self.billing.balance_usd = None if usd is None else self.billing.total_usd + Decimal(str(usd))

    def billing_summary(self) -> dict[str, Any]:
        summary = self.billing.summary()
        summary["in_flight"] = self._in_flight
        summary["requests"] = self.counters["requests"]
        summary["faults"] = {k[6:]: v for k, v in self.counters.items() if k.startswith("fault:")}
        return summary

    # -- one request ------------------------------------------------------------------------------------

    async def handle(self, body: bytes, authorization: str | None) -> Answer:
        """Answer one ``POST /v1`` body."""
        self.counters["requests"] += 1
        try:
            tasks = json.loads(body)
        except ValueError:
            return error_answer(WireError(400, "invalidJson", "The request body is not valid JSON."))
        if not isinstance(tasks, list) or not tasks:
            return error_answer(
                WireError(400, "invalidJson", "The request body must be a JSON array of tasks.")
            )
        key = _api_key(tasks, authorization)
        if key is None or (self.settings.api_key is not None and key != self.settings.api_key):
            return error_answer(invalid_api_key())
        fault = self._roll(tasks)
        if fault in _REFUSALS:
            return self._refusal(fault)
        if fault == "403":
            return error_answer(forbidden())
        try:
            answer = await self._run_tasks(tasks)
        except SandboxClosing:  # the task never finished: no answer, as when a real server goes down
            return Answer(503, b'{"errors":[{"code":"serviceUnavailable"}]}', fault="drop")
        answer.fault = fault if fault in _AFTER else None
        return answer

    def _roll(self, tasks: list[Any]) -> str | None:
        if not any(isinstance(t, dict) and t.get("taskType") == "imageInference" for t in tasks):
            return None
        fault = self.dice.roll()
        if fault is not None:
            self.counters[f"fault:{fault}"] += 1
        return fault

    def _refusal(self, fault: str) -> Answer:
        headers = []
        if fault == "429-retry-after":
            headers.append((b"retry-after", f"{self.settings.retry_after_s:g}".encode()))
        return error_answer(transient(_REFUSALS[fault]), headers)

    async def _run_tasks(self, tasks: list[Any]) -> Answer:
        data: list[dict[str, Any]] = []
        errors: list[WireError] = []
        waiting: list[TaskRecord] = []
        for index, raw in enumerate(tasks):
            if not isinstance(raw, dict):
                errors.append(invalid_parameter(f"[{index}]", "Each task must be an object.", "invalidTask"))
                continue
            try:
                data.extend(await self._run_task(raw, index, waiting))
            except WireError as exc:
                errors.append(exc.for_task(_str(raw.get("taskType")), _str(raw.get("taskUUID"))))
        for record in waiting:
            data.extend(await self._results(record))
        status = 200 if data or not errors else errors[0].status
        return Answer(status, _json(envelope(data or None, [e.item() for e in errors])))

    async def _run_task(
        self, raw: dict[str, Any], index: int, waiting: list[TaskRecord]
    ) -> list[dict[str, Any]]:
        kind = raw.get("taskType")
        if kind == "imageInference":
            self._refuse_retired(raw)
            record = self._accept(validate_inference(raw, known_image=self.store.has_image))
            if record.task.delivery == "sync":
                waiting.append(record)
                return []
            return [{"taskType": "imageInference", "taskUUID": record.task.task_uuid, "status": "processing"}]
        if kind == "getResponse":
            return await self._get_response(check_task_uuid(raw))
        if kind == "imageUpload":
            return [await upload_image(raw, self.store, self.base_url)]
        if kind == "authentication":
            if index != 0:
                raise invalid_parameter("taskType", "The authentication task must come first.")
            return [{"taskType": "authentication", "connectionSessionUUID": str(uuid.uuid4())}]
        raise invalid_parameter("taskType", f"Unsupported taskType {kind!r}.", "invalidTaskType")

    # -- imageInference ---------------------------------------------------------------------------------

    def _refuse_retired(self, raw: dict[str, Any]) -> None:
        """Answer as a provider that dropped the model (before anything is validated or charged)."""
        check_task_uuid(raw)
        profile = model_profiles().get(_str(raw.get("model")) or "")
        if profile is None:
            return  # not a model of the catalog: validation answers invalidModel
        code = self.settings.retired_code(profile)
        if code is not None:
            raise model_refused(code, profile.id)

    def _accept(self, task: InferenceTask) -> TaskRecord:
        """Queue the task (or refuse it: conflict, queue full, no credit) and start generating it."""
        if task.task_uuid in self.store.tasks:
            raise conflict(task.task_uuid)
        capacity = self.settings.capacity
        if capacity is not None and self._in_flight >= capacity:
            raise WireError(429, "queueFull", f"Too many tasks in flight (capacity {capacity}): try later.")
        cost = sum(task.image_costs(), Decimal(0))  # what completing it will charge
        if not self.billing.can_afford(cost, self._reserved):
            raise insufficient_credits()
        record = TaskRecord(task, time.monotonic())
        self.store.add_task(record)
        delay = self.dice.latency()
        if delay <= 0:
            self._complete(record)
            return record
        record.done = anyio.Event()
        self._in_flight += 1
        self._reserved += cost
        self._task_group.start_soon(self._generate, record, delay, cost)
        return record

    async def _generate(self, record: TaskRecord, delay: float, cost: Decimal) -> None:
        try:
            await anyio.sleep(delay)
        finally:
            self._in_flight -= 1
            self._reserved -= cost
        self._complete(record)

    def _complete(self, record: TaskRecord) -> None:
        """The task is done: register its images, charge it, make its result retrievable."""
        task = record.task
        items = [self.images.register(task, index, self.base_url) for index in range(task.number_results)]
        image_uuids = tuple(item["imageUUID"] for item in items)
        costs = task.image_costs()
        self.billing.charge(
            task.task_uuid, task.prompt_key(), len(items), sum(costs, Decimal(0)), image_uuids, costs
        )
        record.items = items
        record.completed_at = time.monotonic()
        if record.done is not None:
            record.done.set()

    async def _results(self, record: TaskRecord, status: str | None = None) -> list[dict[str, Any]]:
        if record.items is None:
            await self._wait(record)
        assert record.items is not None
        return await self.images.deliver(record.task, record.items, status)

    async def _wait(self, record: TaskRecord) -> None:
        """Wait for the task to complete, unless the sandbox closes first."""
        assert record.done is not None
        async with anyio.create_task_group() as group:

            async def on_close() -> None:
                await self.closing.wait()
                group.cancel_scope.cancel()

            group.start_soon(on_close)
            await record.done.wait()
            group.cancel_scope.cancel()
        if record.items is None:
            raise SandboxClosing

    async def _get_response(self, task_uuid: str) -> list[dict[str, Any]]:
        record = self.store.tasks.get(task_uuid)
        if record is None:
            raise WireError(400, "taskNotFound", f"No task with taskUUID {task_uuid}.", parameter="taskUUID")
        if record.items is None:
            return [{"taskType": "imageInference", "taskUUID": task_uuid, "status": "processing"}]
        return await self._results(record, "success")


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
