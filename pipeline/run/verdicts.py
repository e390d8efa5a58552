"""A task's verdict as ledger events: pure functions from what the provider said to what is recorded.

event, cost = succeeded_event(row, task_uuid, run_id, images)   # cost: exact Decimal, or None
failed_event(row, task_uuid, run_id, error, retryable=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from pipeline.errors import ProviderError
from pipeline.rows import ImageResult, Row
from pipeline.state.events import FailedEvent, SucceededEvent

__all__ = ["failed_event", "succeeded_event"]


def succeeded_event(
    row: Row, task_uuid: str, run_id: str, images: Sequence[ImageResult]
) -> tuple[SucceededEvent, Decimal | None]:
    """The ``succeeded`` event and the task's exact cost (None when the provider sent no cost)."""
    costs = [i.cost_usd for i in images if i.cost_usd is not None]
    cost = sum(costs, Decimal(0)) if costs else None
    event = SucceededEvent(
        id=row.id,
        fingerprint=row.fingerprint,
        task_uuid=task_uuid,
        run_id=run_id,
        images=tuple(images),
        cost_usd=cost,
    )
    return event, cost


def failed_event(
    row: Row, task_uuid: str, run_id: str, error: ProviderError, *, retryable: bool
) -> FailedEvent:
    """The ``failed`` event of an attempt (``retryable=False``: the row failed for good)."""
    return FailedEvent(
        id=row.id,
        fingerprint=row.fingerprint,
        task_uuid=task_uuid,
        run_id=run_id,
        code=error.code,
        message=error.message,
        retryable=retryable,
    )
