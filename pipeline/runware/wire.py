"""Runware's wire format, as pure functions: build tasks, read answers, classify errors.

    task = inference_task(row.request, task_uuid, refs, profile=profile)   # one imageInference task
    task.wire()                                                 # its JSON object, built when it is sent
    items = read_answer(status, headers, body)                  # data items, or a classified ProviderError
    images = images_of(items, task_uuid)                        # the generated images of that task

Every failure becomes one of (``pipeline.errors``)::

    TransientProviderError           refused for now (429, 503, 504): a new attempt may succeed
    ├── InDoubtError                 no readable answer (timeout, dropped connection, 500, bad body):
    │                                the task may be running; reconcile it with getResponse first
    └── ModelUnavailableError        modelUnavailable (and kin): the model cannot serve now
    PermanentProviderError           invalid parameter, content refused: fail the row
    ├── TaskConflictError            conflictTaskUUID: the taskUUID was already submitted
    ├── TaskUnknownError             getResponse does not know the taskUUID (never for imageInference)
    └── ModelRefusedError            the model itself is refused (retired, unknown, disabled)
    FatalProviderError               bad key (401), no credits (402), forbidden (403): stop the run

Which codes mean "the model" is a guess (no retired-model code is documented), so a family is matched:
any code naming a model with a word of absence (``invalidModel``, ``modelNotFound``, ``unknownModel``,
``modelDisabled``, ``modelDeprecated``...) unless the answer names another parameter, a 400/404/410/503
whose ``parameter`` is ``model``, or any 404 to ``imageInference``. ``modelUnavailable`` (``modelNotReady``,
a 503 naming ``model``) is "not now"; the rest are "for good".
"""

from __future__ import annotations

import base64
import email.utils
import json
import mimetypes
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeAlias, cast

from pipeline.config.profiles import ModelProfile
from pipeline.errors import (
    FatalProviderError,
    InDoubtError,
    ModelRefusedError,
    ModelUnavailableError,
    PermanentProviderError,
    ProviderError,
    TaskConflictError,
    TaskUnknownError,
    TransientProviderError,
)
from pipeline.rows import ImageRequest, ImageResult, usd

__all__ = [
    "Delivery",
    "ImageResult",
    "InDoubtError",
    "InferenceTask",
    "TaskConflictError",
    "TaskStatus",
    "TaskUnknownError",
    "WireItem",
    "WireTask",
    "authentication_task",
    "classify",
    "data_uri",
    "data_uri_of",
    "get_response_task",
    "images_of",
    "inference_task",
    "is_model_refusal",
    "parse_retry_after",
    "read_answer",
    "task_status",
    "task_uuid_of",
    "upload_task",
    "wire_of",
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


# A code about the model itself: it names a model and says it is absent, unknown, off or unusable.
_MODEL_CODE = re.compile(
    r"(?i)(model.*(notfound|unknown|invalid|disabled|deprecated|retired|removed|sunset|gone|notsupported"
    r"|unsupported|unavailable|notready|notavailable))|((invalid|unknown|unsupported|retired|deprecated"
    r"|disabled|removed)model)"
)
_MODEL_NOT_NOW = re.compile(r"(?i)model.*(unavailable|notready|notavailable)")
_MODEL_STATUSES = frozenset({400, 404, 410, 503})


# -- building tasks ------------------------------------------------------------------------------------

# A task or an answer's data item as its JSON object. The small fixed tasks (authentication, getResponse,
# imageUpload) are built as one; so is a task a test writes by hand.
WireTask: TypeAlias = Mapping[str, object]
WireItem: TypeAlias = dict[str, object]


Delivery: TypeAlias = Literal["sync", "async"]  # how the provider answers an inference


@dataclass(frozen=True, slots=True)
class InferenceTask:
    """One ``imageInference`` task: the request, the taskUUID and the references as the wire takes them
    (already resolved). Its JSON object is built only when it is sent (``wire``)."""

    task_type: ClassVar[str] = "imageInference"
    task_uuid: str
    request: ImageRequest
    profile: ModelProfile
    reference_images: tuple[str, ...] = ()
    delivery: Delivery = "sync"  # "async": the answer only accepts it (poll it with getResponse)

    def wire(self) -> dict[str, object]:
        """The task's JSON object. Each option goes where the profile puts it (top level, ``settings``,
        ``providerSettings.<p>``); a container appears only when an option fills it, so a task carries
        exactly what the model declares."""
        request, profile = self.request, self.profile
        task: dict[str, object] = {
            "taskType": self.task_type,
            "taskUUID": self.task_uuid,
            "model": request.model,
            "positivePrompt": request.prompt,
        }
        if request.width is not None and request.height is not None:
            task["width"] = request.width
            task["height"] = request.height
        nested: dict[str, object] = {}
        for name, option in profile.options.items():  # the profile's order: the seed requests' order
            text = request.option(name)
            if text is None:
                continue
            where = task if option.at == "top" else nested
            _put(where, option.at, option.wire_name(name), option.to_wire(text))
        task.update(
            numberResults=request.number_results,
            outputType="URL",
            outputFormat=request.output_format,
            includeCost=True,
        )
        task.update(nested)
        if self.reference_images:
            _put_path(task, profile.references.field, list(self.reference_images))
        if self.delivery == "async":
            task["deliveryMethod"] = "async"
        return task


def inference_task(
    request: ImageRequest,
    task_uuid: str,
    reference_images: Sequence[str] = (),
    *,
    profile: ModelProfile,
    delivery: Delivery = "sync",
) -> InferenceTask:
    """The ``imageInference`` task for ``request``; ``reference_images`` already resolved for the wire."""
    return InferenceTask(task_uuid, request, profile, tuple(reference_images), delivery)


def wire_of(task: InferenceTask | WireTask) -> WireTask:
    """The JSON object of ``task``."""
    return task.wire() if isinstance(task, InferenceTask) else task


def task_uuid_of(task: InferenceTask | WireTask) -> str:
    """The taskUUID of ``task`` (a hand-written task without one raises ``KeyError``)."""
    return task.task_uuid if isinstance(task, InferenceTask) else str(task["taskUUID"])


def _put(target: dict[str, object], at: str, key: str, value: object) -> None:
    """``target[...at...][key] = value`` for ``at`` = "top", "settings" or "providerSettings.<p>"."""
    if at == "top":
        target[key] = value
        return
    _put_path(target, f"{at}.{key}", value)


def _put_path(target: dict[str, object], dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        target = cast("dict[str, object]", target.setdefault(part, {}))  # only this module fills them
    target[last] = value


def authentication_task(api_key: str) -> WireTask:
    """Runware's ``authentication`` task: checks the key, generates nothing, costs nothing."""
    return {"taskType": "authentication", "apiKey": api_key}


def get_response_task(task_uuid: str) -> WireTask:
    return {"taskType": "getResponse", "taskUUID": task_uuid}


def upload_task(task_uuid: str, image: str) -> WireTask:
    """An ``imageUpload`` task (``image`` is a data URI)."""
    return {"taskType": "imageUpload", "taskUUID": task_uuid, "image": image}


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for an image's bytes."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def data_uri_of(path: Path, data: bytes) -> str:
    """The data URI of a local image file's bytes (its type guessed from its name)."""
    return data_uri(data, mimetypes.guess_type(path.name)[0] or "application/octet-stream")


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
    task_type: str | None = None,
) -> ProviderError:
    """The typed error for an error answer (HTTP status and/or Runware error code).

    ``task_type`` is the task the answer is about: a 404 means "no such task" only for ``getResponse``;
    for ``imageInference`` it is about the model (or the request), never a reason to resubmit.
    """
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
    if task_type == "getResponse" and (code in UNKNOWN_TASK_CODES or status == 404):
        return TaskUnknownError(**kwargs)
    if refused := _model_error(status, code, parameter, task_type):
        return refused(**kwargs)
    if code in UNKNOWN_TASK_CODES and task_type != "imageInference":
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


def _model_error(
    status: int | None, code: str, parameter: str | None, task_type: str | None
) -> type[ProviderError] | None:
    """``ModelRefusedError`` / ``ModelUnavailableError`` when the answer is about the model itself."""
    if task_type not in (None, "imageInference"):
        return None
    # A code of the family counts unless the answer points at another parameter (a hypothetical
    # "unsupportedModelFeature" about CFGScale is the row's problem, not the model's).
    about_model = parameter in (None, "", "model")
    coded = bool(_MODEL_CODE.search(code)) and about_model
    names_model = parameter == "model" and status in _MODEL_STATUSES
    bare_404 = status == 404 and task_type == "imageInference" and about_model  # not a reference's 404
    if not (coded or names_model or bare_404):
        return None
    if _MODEL_NOT_NOW.search(code) or (status == 503 and not coded):
        return ModelUnavailableError  # "not now": a 503 naming the model without a code that says more
    return ModelRefusedError


def is_model_refusal(exc: BaseException) -> bool:
    """The answer says the model cannot be used (for good, or for now)."""
    return isinstance(exc, (ModelRefusedError, ModelUnavailableError))


def is_overload(exc: BaseException) -> bool:
    """The provider said it is overloaded (shrink the window)."""
    return isinstance(exc, ProviderError) and exc.status in OVERLOAD_STATUSES


def _error_of(
    error: Mapping[str, object], status: int | None, retry_after: float | None, task_type: str | None = None
) -> ProviderError:
    """The error of one error item; ``task_type`` is the task sent (the item may name the polled one)."""
    code = str(error.get("code") or "") or None
    about = _str_or_none(error.get("taskType")) or task_type
    if task_type == "getResponse" and code in UNKNOWN_TASK_CODES:
        about = task_type  # "no such task" answers the question, whichever task type the item names
    return classify(
        status,
        code,
        str(error.get("message") or error.get("code") or "error"),
        task_uuid=_str_or_none(error.get("taskUUID")),
        parameter=_str_or_none(error.get("parameter")),
        retry_after=retry_after,
        task_type=about,
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def read_answer(
    status: int, headers: Mapping[str, str], body: bytes, *, task_type: str | None = None
) -> list[WireItem]:
    """The ``data`` items of an answer; raises the classified error of an error answer.

    A body that is not the JSON envelope raises ``InDoubtError`` (or the HTTP status' error).
    ``task_type``: the kind of task sent, for errors that do not say it themselves.
    """
    retry_after = parse_retry_after(headers.get("retry-after"))
    try:
        envelope = json.loads(body) if body else {}
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict):
        if status >= 400:
            raise classify(
                status,
                None,
                f"HTTP {status} with an unreadable body",
                retry_after=retry_after,
                task_type=task_type,
            )
        raise InDoubtError(message="unreadable answer (not a JSON envelope)", code="malformedAnswer")
    errors = envelope.get("errors") or []
    data = envelope.get("data") or []
    if not isinstance(errors, list) or not isinstance(data, list):
        raise InDoubtError(message="unreadable answer (bad envelope)", code="malformedAnswer")
    if status >= 400 or (errors and not data):
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        raise (
            _error_of(first, status if status >= 400 else None, retry_after, task_type)
            if first
            else classify(status, None, f"HTTP {status}", retry_after=retry_after, task_type=task_type)
        )
    return [item for item in data if isinstance(item, dict)]


def _item_error(item: Mapping[str, object]) -> ProviderError:
    error = item.get("error")
    details = error if isinstance(error, dict) else {"message": str(error or "task failed")}
    details = {"taskUUID": item.get("taskUUID"), **details}
    return _error_of(details, None, None)


def images_of(items: Sequence[Mapping[str, object]], task_uuid: str) -> list[ImageResult]:
    """The images of ``task_uuid`` among ``items``; an item with ``status: "error"`` raises its error."""
    mine = [item for item in items if item.get("taskUUID") == task_uuid]
    for item in mine:
        if item.get("status") == "error":
            raise _item_error(item)
    images: list[ImageResult] = []
    for item in mine:
        if item.get("imageUUID") and item.get("imageURL"):
            cost = item.get("cost")
            images.append(
                ImageResult(
                    index=len(images),
                    image_uuid=str(item["imageUUID"]),
                    image_url=str(item["imageURL"]),
                    cost_usd=usd(cost) if isinstance(cost, (int, float)) else None,
                )
            )
    return images


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """What ``getResponse`` says about one task: ``processing``, ``success`` (with images) or unknown."""

    state: str  # "processing" | "success" | "error" | "unknown"
    images: tuple[ImageResult, ...] = ()
    error: ProviderError | None = None


def task_status(items: Sequence[Mapping[str, object]], task_uuid: str, expected: int) -> TaskStatus:
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
