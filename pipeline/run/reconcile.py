"""Settling a task whose answer is missing or pending, without ever paying for it twice.

``settle`` asks ``getResponse`` until the task is done::

    success      -> its images
    processing   -> poll again (the interval grows up to ``max_interval``)
    error        -> the task's error is raised (the caller records it and moves to a new attempt)
    unknown      -> resubmit with the SAME taskUUID; ``conflictTaskUUID`` means "already there": poll;
                    a refusal of the model (``ModelRefusedError``, ``ModelUnavailableError``) is raised:
                    a 404 to ``imageInference`` is about the model, never "unknown task, resubmit again"

Transient failures of the polling itself are retried; after ``give_up_after`` seconds without a verdict
``StillInDoubtError`` is raised and the task stays in doubt for the next run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from pipeline.errors import (
    FatalProviderError,
    ModelUnavailableError,
    ProviderError,
    StillInDoubtError,
    TransientProviderError,
)
from pipeline.rows import ImageResult, Row
from pipeline.run.limits import Clock, Sleep
from pipeline.runware.client import RunwareClient, TaskConflictError
from pipeline.state.events import SubmittedEvent

__all__ = ["Poll", "StillInDoubtError", "row_from_submitted", "settle"]

Resubmit = Callable[[], Awaitable[list[ImageResult]]]


@dataclass(frozen=True)
class Poll:
    """How ``getResponse`` is polled."""

    interval: float = 0.25
    max_interval: float = 3.0
    give_up_after: float = 600.0


async def settle(
    client: RunwareClient,
    task_uuid: str,
    expected: int,
    resubmit: Resubmit,
    *,
    poll: Poll = Poll(),
    clock: Clock = anyio.current_time,
    sleep: Sleep = anyio.sleep,
) -> list[ImageResult]:
    """The images of ``task_uuid`` once the provider has a verdict (see the module docstring)."""
    deadline = clock() + poll.give_up_after
    interval = poll.interval
    while True:
        images = await _ask(client, task_uuid, expected, resubmit)
        if images is not None:
            return images
        if clock() >= deadline:
            raise StillInDoubtError(task_uuid)
        await sleep(interval)
        interval = min(poll.max_interval, interval * 1.5)


async def _ask(
    client: RunwareClient, task_uuid: str, expected: int, resubmit: Resubmit
) -> list[ImageResult] | None:
    """One round: the images, None for "ask again", or the task's error raised.

    Only the task's own verdict (an error item, or the answer to its resubmission) fails it: a failed
    question (a bad answer to getResponse) is asked again. A fatal answer (bad key, no credits) is raised
    and the task stays in doubt.
    """
    try:
        status = await client.get_response(task_uuid, expected=expected)
    except FatalProviderError:
        raise
    except ProviderError:
        return None
    if status.error is not None:
        raise status.error
    if status.state == "unknown":
        try:
            return await resubmit() or None
        except ModelUnavailableError:
            raise  # about the model, not the moment: the caller counts it (a persistent one stops it)
        except (TaskConflictError, TransientProviderError):
            return None  # already there after all, or refused for now: ask again
    return list(status.images) if status.state == "success" else None


def row_from_submitted(ev: SubmittedEvent) -> Row:
    """The row a ``submitted`` event was sent for (to reconcile or resubmit it after a crash)."""
    return Row(0, ev.id, ev.fingerprint, ev.sent_request(), dict(ev.passthrough))
