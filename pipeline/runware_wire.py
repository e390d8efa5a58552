"""Runware's wire format, as pure functions: build tasks, read answers, classify errors.

    task = inference_task(row.request, task_uuid, refs)        # one imageInference task (a dict)
    items = read_answer(status, headers, body)                  # data items, or a classified ProviderError
    images = images_of(items, task_uuid)                        # the generated images of that task

Every failure becomes one of (``pipeline.errors``)::

    TransientProviderError           refused for now (429, 503, 504): a new attempt may succeed
    ├── InDoubtError                 no readable answer (timeout, dropped connection, 500, bad body):
    │                                the task may be running; reconcile it with getResponse first
    PermanentProviderError           invalid parameter, content refused: fail the row
    ├── TaskConflictError            conflictTaskUUID: the taskUUID was already submitted
    └── TaskUnknownError             getResponse does not know the taskUUID
    FatalProviderError               bad key (401), no credits (402), forbidden (403): stop the run
"""

from __future__ import annotations

import base64
import email.utils
import json
import mimetypes
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import (
    FatalProviderError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from pipeline.rows import ImageRequest

__all__ = [
    "GeneratedImage",
    "InDoubtError",
    "TaskConflictError",
    "TaskStatus",
    "TaskUnknownError",
    "classify",
    "data_uri_of",
    "get_response_task",
    "images_of",
    "inference_task",
    "parse_retry_after",
    "read_answer",
    "task_status",
    "upload_task",
]

FATAL_STATUSES = frozenset({401, 402, 403})
REFUSED_STATUSES = frozenset({408, 425, 429, 503, 504})  # a definite "not now": the task did not run
OVERLOAD_STATUSES = frozenset({429, 503, 504})
FATAL_CODES = frozenset(
    {"invalidApiKey", "missingApiKey", "insufficientCredits", "forbidden", "accountSuspended", "unauthorized"}
)
CONFLICT_CODES = frozenset({"conflictTaskUUID", "duplicateTaskUUID"})
UNKNOWN_TASK_CODES = frozenset({"taskNotFound", "unknownTaskUUID", "notFound", "taskUUIDNotFound"})
TRANSIENT_CODES = frozenset(
    {
        "timeout",
        "timeoutProvider",
        "providerTimeout",
        "serverError",
        "internalError",
        "serviceUnavailable",
        "queueFull",
        "rateLimitExceeded",
        "tooManyRequests",
        "capacityExceeded",
    }
)


class InDoubtError(TransientProviderError):
    """No readable answer: the task may or may not be running. Reconcile before a new attempt."""


class TaskConflictError(PermanentProviderError):
    """``conflictTaskUUID``: this taskUUID was already submitted; poll it instead."""


class TaskUnknownError(PermanentProviderError):
    """The provider has no task with this taskUUID."""


# -- building tasks ------------------------------------------------------------------------------------


def inference_task(
    request: ImageRequest,
    task_uuid: str,
    reference_images: Sequence[str] = (),
    *,
    settings_key: str = "openai",
    delivery: str = "sync",
) -> dict[str, Any]:
    """The ``imageInference`` task for ``request``; ``reference_images`` already resolved for the wire."""
    task: dict[str, Any] = {
        "taskType": "imageInference",
        "taskUUID": task_uuid,
        "model": request.model,
        "positivePrompt": request.prompt,
        "width": request.width,
        "height": request.height,
        "numberResults": request.number_results,
        "outputType": "URL",
        "outputFormat": request.output_format,
        "includeCost": True,
        "providerSettings": {settings_key: {"quality": request.quality, "background": request.background}},
    }
    if reference_images:
        task["inputs"] = {"referenceImages": list(reference_images)}
    if delivery == "async":
        task["deliveryMethod"] = "async"
    return task


def get_response_task(task_uuid: str) -> dict[str, Any]:
    return {"taskType": "getResponse", "taskUUID": task_uuid}


def upload_task(task_uuid: str, image: str) -> dict[str, Any]:
    """An ``imageUpload`` task (``image`` is a data URI)."""
    return {"taskType": "imageUpload", "taskUUID": task_uuid, "image": image}


def data_uri_of(path: Path, data: bytes) -> str:
    """``data:<mime>;base64,...`` for a local image file's bytes."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# -- reading answers -----------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify(
    status: int | None,
    code: str | None,
    message: str,
    *,
    task_uuid: str | None = None,
    parameter: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The typed error for an error answer (HTTP status and/or Runware error code)."""
    code = code or (f"http{status}" if status else "unknown")
    kwargs: dict[str, Any] = {
        "message": message,
        "code": code,
        "status": status,
        "task_uuid": task_uuid,
        "parameter": parameter,
        "retry_after": retry_after,
    }
    if code in CONFLICT_CODES:
        return TaskConflictError(**kwargs)
    if code in UNKNOWN_TASK_CODES or status == 404:
        return TaskUnknownError(**kwargs)
    if code in FATAL_CODES or status in FATAL_STATUSES:
        return FatalProviderError(**kwargs)
    if status in REFUSED_STATUSES:
        return TransientProviderError(**kwargs)
    if status is not None and status >= 500:
        return InDoubtError(**kwargs)  # 500/502: accepted or not? only getResponse can tell
    if code in TRANSIENT_CODES:
        return TransientProviderError(**kwargs)
    return PermanentProviderError(**kwargs)


def is_overload(exc: BaseException) -> bool:
    """The provider said it is overloaded (shrink the window)."""
    return isinstance(exc, ProviderError) and exc.status in OVERLOAD_STATUSES


def _error_of(error: Mapping[str, Any], status: int | None, retry_after: float | None) -> ProviderError:
    return classify(
        status,
        str(error.get("code") or "") or None,
        str(error.get("message") or error.get("code") or "error"),
        task_uuid=_str_or_none(error.get("taskUUID")),
        parameter=_str_or_none(error.get("parameter")),
        retry_after=retry_after,
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def read_answer(status: int, headers: Mapping[str, str], body: bytes) -> list[dict[str, Any]]:
    """The ``data`` items of an answer; raises the classified error of an error answer.

    A body that is not the JSON envelope raises ``InDoubtError`` (or the HTTP status' error).
    """
    retry_after = parse_retry_after(headers.get("retry-after"))
    try:
        envelope = json.loads(body) if body else {}
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict):
        if status >= 400:
            raise classify(status, None, f"HTTP {status} with an unreadable body", retry_after=retry_after)
        raise InDoubtError(message="unreadable answer (not a JSON envelope)", code="malformedAnswer")
    errors = envelope.get("errors") or []
    data = envelope.get("data") or []
    if not isinstance(errors, list) or not isinstance(data, list):
        raise InDoubtError(message="unreadable answer (bad envelope)", code="malformedAnswer")
    if status >= 400 or (errors and not data):
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        raise (
            _error_of(first, status if status >= 400 else None, retry_after)
            if first
            else classify(status, None, f"HTTP {status}", retry_after=retry_after)
        )
    return [item for item in data if isinstance(item, dict)]


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One image of a finished task."""

    index: int
    image_uuid: str
    image_url: str
    cost_usd: float | None


def _item_error(item: Mapping[str, Any]) -> ProviderError:
    error = item.get("error")
    details = error if isinstance(error, dict) else {"message": str(error or "task failed")}
    details = {"taskUUID": item.get("taskUUID"), **details}
    return _error_of(details, None, None)


def images_of(items: Sequence[Mapping[str, Any]], task_uuid: str) -> list[GeneratedImage]:
    """The images of ``task_uuid`` among ``items``; an item with ``status: "error"`` raises its error."""
    mine = [item for item in items if item.get("taskUUID") == task_uuid]
    for item in mine:
        if item.get("status") == "error":
            raise _item_error(item)
    images: list[GeneratedImage] = []
    for item in mine:
        if item.get("imageUUID") and item.get("imageURL"):
            cost = item.get("cost")
            images.append(
                GeneratedImage(
                    index=len(images),
                    image_uuid=str(item["imageUUID"]),
                    image_url=str(item["imageURL"]),
                    cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
                )
            )
    return images


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """What ``getResponse`` says about one task: ``processing``, ``success`` (with images) or unknown."""

    state: str  # "processing" | "success" | "error" | "unknown"
    images: tuple[GeneratedImage, ...] = ()
    error: ProviderError | None = None


def task_status(items: Sequence[Mapping[str, Any]], task_uuid: str, expected: int) -> TaskStatus:
    """Fold ``getResponse`` items: an error item is the task's verdict; fewer images than expected is
    still processing."""
    mine = [item for item in items if item.get("taskUUID") == task_uuid]
    if not mine:
        return TaskStatus("unknown")
    try:
        images = images_of(mine, task_uuid)
    except ProviderError as exc:
        return TaskStatus("error", error=exc)
    if any(item.get("status") == "processing" for item in mine) or len(images) < expected:
        return TaskStatus("processing", tuple(images))
    return TaskStatus("success", tuple(images))
