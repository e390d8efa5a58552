"""Runware's error envelope, as the sandbox answers it.

raise WireError(400, "invalidWidth", "Invalid value for width ...", parameter="width")
envelope(data=[...], errors=[err.item()])     # {"data": [...], "errors": [...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "MODEL_REFUSAL_CODES",
    "WireError",
    "conflict",
    "envelope",
    "forbidden",
    "insufficient_credits",
    "invalid_api_key",
    "invalid_parameter",
    "model_refused",
    "transient",
]

_TRANSIENT = {
    429: ("rateLimitExceeded", "Too many requests: slow down and try again."),
    500: ("internalError", "Internal server error while processing the request."),
    503: ("serviceUnavailable", "The service is temporarily unavailable: no capacity right now."),
    504: ("timeoutProvider", "The task waited too long in the queue and was dropped."),
}


@dataclass(eq=False)
class WireError(Exception):
    """One error item of an answer, with the HTTP status it answers with when it is alone."""

    status: int
    code: str
    message: str
    parameter: str | None = None
    task_type: str | None = None
    task_uuid: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def for_task(self, task_type: str | None, task_uuid: str | None) -> WireError:
        """This error, naming the task it belongs to."""
        self.task_type = self.task_type or task_type
        self.task_uuid = self.task_uuid or task_uuid
        return self

    def item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.parameter is not None:
            item["parameter"] = self.parameter
        if self.task_type is not None:
            item["taskType"] = self.task_type
        if self.task_uuid is not None:
            item["taskUUID"] = self.task_uuid
        return item


def envelope(
    data: list[dict[str, Any]] | None = None, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The answer body: ``data`` and/or ``errors``."""
    body: dict[str, Any] = {}
    if data is not None:
        body["data"] = data
    if errors:
        body["errors"] = errors
    return body


def invalid_parameter(parameter: str, message: str, code: str | None = None) -> WireError:
    """400 for a bad parameter, naming it (``invalidWidth`` style codes, as Runware's)."""
    name = parameter.rpartition(".")[2]
    return WireError(400, code or f"invalid{name[:1].upper()}{name[1:]}", message, parameter=parameter)


# Real answers for a model the provider does not (or no longer, or not now) serve.
_MODEL_REFUSALS = {
    "invalidModel": (
        400,
        "Invalid value for model parameter. Model must be an string value representing a valid AIR "
        "identifier.",
    ),
    "modelNotFound": (404, "Model {model} not found."),
    "modelUnavailable": (503, "Model {model} is not available at the moment."),
}

MODEL_REFUSAL_CODES = tuple(_MODEL_REFUSALS)


def model_refused(code: str, model: str) -> WireError:
    """The answer of a provider that does not serve ``model``: ``invalidModel`` (400), ``modelNotFound``
    (404) or ``modelUnavailable`` (503), naming the ``model`` parameter."""
    status, message = _MODEL_REFUSALS[code]
    return WireError(status, code, message.format(model=model), parameter="model")


def invalid_api_key() -> WireError:
    return WireError(401, "invalidApiKey", "Invalid API key. Get one at https://my.runware.ai/keys.")


def insufficient_credits() -> WireError:
    return WireError(402, "insufficientCredits", "Insufficient credits: top up your account balance.")


def forbidden() -> WireError:
    return WireError(403, "forbidden", "This API key is not allowed to perform this request.")


def conflict(task_uuid: str) -> WireError:
    return WireError(
        400,
        "conflictTaskUUID",
        f"A task with taskUUID {task_uuid} was already submitted: poll it with getResponse.",
        parameter="taskUUID",
        task_uuid=task_uuid,
    )


def transient(status: int, code: str | None = None, message: str | None = None) -> WireError:
    """A 429, 500, 503 or 504 error."""
    default_code, default_message = _TRANSIENT[status]
    return WireError(status, code or default_code, message or default_message)
