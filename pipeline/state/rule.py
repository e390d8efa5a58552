"""The row-state rule, the attempt rule and the cost rule, as plain functions over plain data.

    row = RowFacts()                       # a row the state has never seen: pending, no attempt
    on_submitted(row, handle)              # in_doubt (unless it already succeeded)
    answered, first = on_succeeded(row, images=2)
    on_failed(row, retryable=True)         # pending; retryable=False: failed for good

Row state for (id, fingerprint): succeeded if any succeeded event; else in_doubt if the last task event is
submitted; else failed if the last failed event has retryable=false; else pending. ``handle`` is whatever
the caller keeps of the unanswered ``submitted`` event (the store keeps its sequence number and task).

This is the one place the rule is written: the store applies it to every event it records
(``pipeline.state.changes``), a 0.1 ledger's events included when it is imported. It is the rule 0.1's
fold of ``ledger.jsonl`` applied; ``tests/data/v01_job`` holds what 0.1 computed for a real job, and the
tests check the store against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Final, Generic, TypeVar
from urllib.parse import urlsplit

from pipeline.state.events import SucceededEvent

__all__ = [
    "FAILED",
    "IN_DOUBT",
    "PENDING",
    "ROW_STATES",
    "SUCCEEDED",
    "PendingDownload",
    "RowFacts",
    "event_cost",
    "format_extension",
    "highest_attempt",
    "image_extension",
    "on_failed",
    "on_submitted",
    "on_succeeded",
]

SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
IN_DOUBT: Final = "in_doubt"
PENDING: Final = "pending"
ROW_STATES: Final = (SUCCEEDED, FAILED, PENDING, IN_DOUBT)

H = TypeVar("H")


@dataclass(frozen=True, slots=True)
class PendingDownload:
    """An image of a row's first success that is not on disk yet."""

    id: str
    fingerprint: str
    task_uuid: str
    index: int
    image_uuid: str
    image_url: str
    ext: str  # "jpg" / "png" / "webp", from the request's output format (else the URL): ``image_extension``


@dataclass(slots=True)
class RowFacts(Generic[H]):
    """What the rule knows of one (id, fingerprint)."""

    state: str = PENDING
    attempts: int = 0  # submitted events of this row
    images: int = 0  # images of its first success
    submit: H | None = None  # the last submitted, until its task is answered


def on_submitted(row: RowFacts[H], submit: H) -> None:
    """A task of the row was sent: in doubt until answered (a succeeded row stays succeeded)."""
    row.attempts += 1
    row.submit = submit
    if row.state != SUCCEEDED:
        row.state = IN_DOUBT


def on_succeeded(row: RowFacts[H], images: int) -> tuple[H | None, bool]:
    """The provider returned images: ``(the submit it answered, whether it is the row's first success)``.

    A second success is a duplicate payment: counted in spend, never in images or downloads.
    """
    submit, row.submit = row.submit, None
    if row.state == SUCCEEDED:
        return submit, False
    row.state = SUCCEEDED
    row.images = images
    return submit, True


def on_failed(row: RowFacts[H], retryable: bool) -> H | None:
    """The attempt failed: pending (retry later) or failed for good; a succeeded row stays succeeded."""
    submit, row.submit = row.submit, None
    if row.state != SUCCEEDED:
        row.state = PENDING if retryable else FAILED
    return submit


def highest_attempt(current: int, attempt: int) -> int:
    """The fingerprint's highest attempt after one more ``submitted`` (the next is this + 1)."""
    return attempt if attempt > current else current


def event_cost(ev: SucceededEvent) -> Decimal:
    """Exact sum of the images' costs; the event's total if none has one (0 if neither)."""
    costs = [image.cost_usd for image in ev.images if image.cost_usd is not None]
    if not costs:
        return ev.cost_usd or Decimal(0)
    return costs[0] if len(costs) == 1 else sum(costs, Decimal(0))


def image_extension(output_format: object, url: str) -> str:
    """File extension of a generated image: from the request's output format, else from its URL."""
    if isinstance(output_format, str) and output_format:
        return format_extension(output_format)
    suffix = urlsplit(url).path.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    return suffix if suffix.isalnum() and 0 < len(suffix) <= 5 else "bin"


@lru_cache(maxsize=64)
def format_extension(output_format: str) -> str:
    """``"jpg"`` for JPG/JPEG, else the format in lower case."""
    return "jpg" if output_format.upper() in ("JPG", "JPEG") else output_format.lower()
