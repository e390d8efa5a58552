"""The Runware client: send tasks over ``httpx.AsyncClient``, poll them, upload reference images.

    async with httpx.AsyncClient(timeout=180) as http:
        client = RunwareClient(http, "https://api.runware.ai/v1", api_key)
        await client.authenticate()                # free: raises FatalProviderError for a bad key
        images = await client.infer(task)          # an InferenceTask (or its JSON object): the images
                                                   # (sync delivery); async: [] (accepted: poll it)
        status = await client.get_response(uuid, expected=1)
        image_uuid = await client.upload(data_uri)

Auth is a Bearer header. Transport failures become ``InDoubtError``; error answers become the typed errors
of ``pipeline.runware.wire``. The API key is scrubbed from every message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import httpx

from pipeline.errors import (
    ModelRefusedError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from pipeline.runware.http_lean import Answer, LeanConnections, post_head
from pipeline.runware.wire import (
    Delivery,
    ImageResult,
    InDoubtError,
    InferenceTask,
    TaskConflictError,
    TaskStatus,
    TaskUnknownError,
    WireItem,
    WireTask,
    authentication_task,
    classify,
    data_uri_of,
    get_response_task,
    images_of,
    inference_task,
    is_model_refusal,
    is_overload,
    read_answer,
    task_status,
    task_uuid_of,
    upload_task,
    wire_of,
)

__all__ = [
    "UNREACHABLE",
    "Delivery",
    "ImageResult",
    "InDoubtError",
    "InferenceTask",
    "RunwareClient",
    "TaskConflictError",
    "TaskStatus",
    "TaskUnknownError",
    "classify",
    "data_uri_of",
    "inference_task",
    "is_model_refusal",
    "is_overload",
    "transport_error",
]


UNREACHABLE = "connectError"  # the code of a request that never left: no connection
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def transport_error(exc: httpx.HTTPError) -> TransientProviderError:
    """A transport failure. Before the request left (no connection): a plain transient refusal.
    After (timeout, dropped connection, protocol error): the task is in doubt."""
    name = type(exc).__name__
    message = f"{name}: {exc}" if str(exc) else name
    if isinstance(exc, _NEVER_SENT):
        return TransientProviderError(message=message, code=UNREACHABLE)
    code = "timeout" if isinstance(exc, httpx.TimeoutException) else "connectionError"
    return InDoubtError(message=message, code=code)


_VERDICT = (None, 200, 400)  # statuses of an errors envelope that reports a task's failure


def _is_verdict(exc: ProviderError) -> bool:
    """An error answer to getResponse that is the task's own failure, not a failed question. A refused
    model is the task's verdict whatever the status (a 404 ``modelNotFound`` is not "ask again")."""
    if isinstance(exc, ModelRefusedError):
        return True
    return not isinstance(exc, InDoubtError) and exc.status in _VERDICT


class RunwareClient:
    """Runware's REST API (``POST endpoint`` with a JSON array of tasks)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        endpoint: str,
        api_key: str,
        *,
        delivery: Delivery = "sync",
        lean: LeanConnections | None = None,
    ) -> None:
        self._http = http
        self._lean = lean  # when given, the POSTs go over these connections (``http_lean``)
        self.delivery = delivery  # how this provider answers an inference (the tasks say it)
        self.endpoint = endpoint
        self._url = httpx.URL(endpoint)
        self._api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    async def post(self, tasks: Sequence[InferenceTask | WireTask]) -> list[WireItem]:
        """Send ``tasks``; the answer's data items, or a classified ``ProviderError``."""
        wire = [wire_of(task) for task in tasks]
        body = json.dumps(wire, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        try:
            answer = await self._send(body)
        except httpx.HTTPError as exc:
            raise self._scrub(transport_error(exc)) from None
        kind = wire[-1].get("taskType") if wire else None
        task_type = kind if isinstance(kind, str) else None
        try:
            return read_answer(answer.status, answer.headers, answer.body, task_type=task_type)
        except ProviderError as exc:
            raise self._scrub(exc) from None

    async def _send(self, body: bytes) -> Answer:
        if self._lean is not None:
            head = post_head(self._url, self._headers, len(body))
            return await self._lean.post(self._url, head, body, self._http.timeout)
        response = await self._http.post(self._url, content=body, headers=self._headers)
        return Answer(response.status_code, dict(response.headers), await response.aread())

    async def authenticate(self) -> None:
        """Check the API key with the ``authentication`` task (no generation, no charge); raises the
        classified error (``FatalProviderError`` for a key the provider refuses)."""
        await self.post([authentication_task(self._api_key)])

    async def infer(self, task: InferenceTask | WireTask) -> list[ImageResult]:
        """Send one ``imageInference`` task; its images (empty when delivery is async: poll it)."""
        items = await self.post([task])
        return images_of(items, task_uuid_of(task))

    async def get_response(self, task_uuid: str, *, expected: int) -> TaskStatus:
        """What the provider says about ``task_uuid`` now (a failed task is ``state="error"``); raises
        only when the question itself could not be answered."""
        try:
            items = await self.post([get_response_task(task_uuid)])
        except TaskUnknownError:
            return TaskStatus("unknown")
        except (PermanentProviderError, TransientProviderError) as exc:
            if exc.task_uuid == task_uuid and _is_verdict(exc):
                return TaskStatus("error", error=exc)  # the task's own failure, in an errors envelope
            raise
        return task_status(items, task_uuid, expected)

    async def upload(self, image: str) -> str:
        """Upload a data URI with ``imageUpload``; its imageUUID."""
        task_uuid = str(uuid.uuid4())
        items = await self.post([upload_task(task_uuid, image)])
        for item in items:
            if item.get("taskUUID") == task_uuid and item.get("imageUUID"):
                return str(item["imageUUID"])
        raise InDoubtError(message="imageUpload answer without an imageUUID", code="malformedAnswer")

    def _scrub(self, exc: ProviderError) -> ProviderError:
        """Never let the API key through in a message (some servers echo the request)."""
        if self._api_key and self._api_key in exc.message:
            exc.message = exc.message.replace(self._api_key, "***")
            exc.args = (exc.message,)
        return exc
