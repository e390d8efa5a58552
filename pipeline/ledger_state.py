"""What the ledger says now: a pure fold of its events (no IO; ``pipeline.ledger.load_state`` reads the file).

    state = fold(events)
    state.row_state(id, fingerprint)     # SUCCEEDED / FAILED / IN_DOUBT / PENDING, or None if never sent
    state.next_attempt(fingerprint)      # 1 + the highest attempt ever submitted for that fingerprint
    state.in_doubt                       # submitted tasks with no answer yet: reconcile them first
    state.spent_usd                      # Decimal: exact sum of the provider's costs

    state = fold(events, earlier_models=True)   # also keeps what each id's successes were generated with
    state.generated_by_earlier_model(row)       # True: same id, prompt and references, done on another model

Row state for (id, fingerprint): succeeded if any succeeded event; else in_doubt if the last task event is
submitted; else failed if the last failed event has retryable=false; else pending. Per row it keeps a few
small fields (the full submitted event only while the task is unanswered), so a million rows fit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final
from urllib.parse import urlsplit

from pipeline.events import (
    DownloadedEvent,
    DownloadFailedEvent,
    Event,
    FailedEvent,
    JobEvent,
    RunEvent,
    SubmittedEvent,
    SucceededEvent,
    UploadedEvent,
)
from pipeline.fingerprint import fingerprint, reference_key
from pipeline.rows import ImageRequest, Row

__all__ = [
    "FAILED",
    "IN_DOUBT",
    "PENDING",
    "ROW_STATES",
    "SUCCEEDED",
    "LedgerState",
    "PendingDownload",
    "RowRecord",
    "fold",
    "generated_by_earlier_model",
    "money",
    "settings_of",
]

SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
IN_DOUBT: Final = "in_doubt"
PENDING: Final = "pending"
ROW_STATES: Final = (SUCCEEDED, FAILED, PENDING, IN_DOUBT)


def money(value: float | int | str | Decimal | None) -> Decimal:
    """Exact Decimal of a ledger money field (``Decimal(str(x))``; None is 0)."""
    return Decimal(0) if value is None else Decimal(str(value))


class RowRecord:
    """Compact state of one (id, fingerprint)."""

    __slots__ = ("attempts", "images", "key", "state", "submit")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key  # (id, fingerprint): the dict's own key, shared by what refers to the row
        self.state: str = PENDING
        self.attempts: int = 0  # submitted events for this row
        self.images: int = 0  # images of its (first) success
        self.submit: SubmittedEvent | None = None  # last submitted, until its task is answered


@dataclass(frozen=True, slots=True)
class PendingDownload:
    """An image that succeeded but is not on disk yet."""

    id: str
    fingerprint: str
    task_uuid: str
    index: int
    image_uuid: str
    image_url: str
    ext: str  # "jpg" / "png" / "webp", from the request's output format (else the URL)


@dataclass
class LedgerState:
    """Everything a run needs from the ledger. Build with ``fold(events)``; keep current with ``apply``."""

    namespace: str | None = None
    job: str | None = None
    run_ids: list[str] = field(default_factory=list)
    rows: dict[tuple[str, str], RowRecord] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)  # fingerprint -> highest attempt submitted
    uploads: dict[str, str] = field(default_factory=dict)  # sha256 -> image_uuid
    undownloaded: dict[tuple[str, int], PendingDownload] = field(default_factory=dict)
    spent_usd: Decimal = Decimal(0)
    images: int = 0  # images of succeeded rows (first success each)
    downloaded: int = 0
    download_failures: int = 0
    duplicate_successes: int = 0  # rows paid for more than once (should stay 0)
    # id -> (fingerprint, request without prompt and references) of each success; None: not kept.
    earlier: dict[str, list[tuple[str, ImageRequest]]] | None = None
    _counts: Counter[str] = field(default_factory=Counter, init=False, repr=False)
    _settings: dict[ImageRequest, ImageRequest] = field(default_factory=dict, init=False, repr=False)

    def row_state(self, id: str, fingerprint: str) -> str | None:
        """The row's state, or None if the ledger has never seen it."""
        record = self.rows.get((id, fingerprint))
        return None if record is None else record.state

    def generated_by_earlier_model(self, row: Row, reference_keys: Sequence[str] | None = None) -> bool:
        """True when ``row.id`` succeeded on another model with the same prompt and reference images.

        Each earlier success's fingerprint is recomputed with this row's prompt and reference keys: it
        is its own only when both are the same, content included (a reference file edited in place is
        not the same). ``reference_keys``: the row's, when known; else they are computed, reading its
        local reference files, and only for a row that has such an earlier success. Needs a state built
        with ``earlier_models=True`` (else always False).
        """
        return generated_by_earlier_model(row, (self.earlier or {}).get(row.id, ()), reference_keys)

    def _remember(self, key: tuple[str, str], request: Mapping[str, Any]) -> None:
        """Keep what a success was generated with (one shared object per distinct setting)."""
        assert self.earlier is not None
        settings = settings_of(request)
        settings = self._settings.setdefault(settings, settings)
        self.earlier.setdefault(key[0], []).append((key[1], settings))

    def next_attempt(self, fingerprint: str) -> int:
        """Attempt number for a new taskUUID of ``fingerprint`` (never reuses one)."""
        return self.attempts.get(fingerprint, 0) + 1

    @property
    def in_doubt(self) -> list[SubmittedEvent]:
        """Submitted tasks of in-doubt rows, in ledger order of rows: reconcile before anything else."""
        return [r.submit for r in self.rows.values() if r.state == IN_DOUBT and r.submit is not None]

    def counts(self) -> dict[str, int]:
        """Rows per state (every state present, zeros included). O(1): kept up to date by ``apply``."""
        return {state: self._counts.get(state, 0) for state in ROW_STATES}

    def _set_state(self, record: RowRecord, state: str) -> None:
        counts = self._counts
        counts[record.state] -= 1
        counts[state] += 1
        record.state = state

    def apply(self, event: Event) -> None:
        """Fold one more event into the state."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def _record(self, id: str, fingerprint: str) -> RowRecord:
        key = (id, fingerprint)
        record = self.rows.get(key)
        if record is None:
            record = self.rows[key] = RowRecord(key)
            self._counts[record.state] += 1
        return record


def generated_by_earlier_model(
    row: Row, successes: Iterable[tuple[str, ImageRequest]], reference_keys: Sequence[str] | None = None
) -> bool:
    """True when one of ``successes`` (``(fingerprint, settings_of(its request))`` of ``row.id``'s
    successes) was generated on another model with this row's prompt and reference images (the rule of
    ``LedgerState.generated_by_earlier_model``, for any source of successes: a fold, or the store)."""
    model, prompt = row.request.model, row.request.prompt
    candidates = [(fp, s) for fp, s in successes if s.model != model]
    if not candidates:
        return False
    if reference_keys is None:
        reference_keys = [reference_key(ref) for ref in row.request.reference_images]
    return any(fingerprint(replace(s, prompt=prompt), reference_keys) == fp for fp, s in candidates)


def fold(events: Iterable[Event], *, earlier_models: bool = False) -> LedgerState:
    """The state after ``events``, in order; ``earlier_models``: keep what each success was generated
    with, for ``generated_by_earlier_model`` (``[resume] keep_earlier_models``)."""
    state = LedgerState(earlier={} if earlier_models else None)
    for event in events:
        state.apply(event)
    return state


def _on_job(state: LedgerState, ev: JobEvent) -> None:
    if state.namespace is None:
        state.namespace, state.job = ev.namespace, ev.job


def _on_run(state: LedgerState, ev: RunEvent) -> None:
    state.run_ids.append(ev.run_id)


def _on_uploaded(state: LedgerState, ev: UploadedEvent) -> None:
    state.uploads[ev.sha256] = ev.image_uuid


def _on_submitted(state: LedgerState, ev: SubmittedEvent) -> None:
    record = state._record(ev.id, ev.fingerprint)
    record.attempts += 1
    record.submit = ev
    if record.state != SUCCEEDED:
        state._set_state(record, IN_DOUBT)
    if ev.attempt > state.attempts.get(ev.fingerprint, 0):
        state.attempts[ev.fingerprint] = ev.attempt


def _on_succeeded(state: LedgerState, ev: SucceededEvent) -> None:
    record = state._record(ev.id, ev.fingerprint)
    state.spent_usd += _event_cost(ev)
    submit, record.submit = record.submit, None
    if record.state == SUCCEEDED:
        state.duplicate_successes += 1
        return
    state._set_state(record, SUCCEEDED)
    if state.earlier is not None and submit is not None:
        state._remember(record.key, submit.request)
    record.images = len(ev.images)
    state.images += len(ev.images)
    fmt = submit.request.get("output_format") if submit and submit.task_uuid == ev.task_uuid else None
    id, fingerprint = record.key
    for image in ev.images:
        ext = _extension(fmt, image.image_url)
        state.undownloaded[(ev.task_uuid, image.index)] = PendingDownload(
            id, fingerprint, ev.task_uuid, image.index, image.image_uuid, image.image_url, ext
        )


def settings_of(request: Mapping[str, Any]) -> ImageRequest:
    """A submitted event's request without its prompt and references (as ``row_from_submitted``)."""
    width, height = request.get("width"), request.get("height")
    return ImageRequest(
        model=str(request.get("model")),
        prompt="",
        width=None if width is None else int(width),
        height=None if height is None else int(height),
        quality=request.get("quality") or "",
        background=request.get("background") or "",
        output_format=str(request.get("output_format")),
        number_results=int(request.get("number_results") or 1),
        options=tuple(sorted((request.get("options") or {}).items())),
    )


def _event_cost(ev: SucceededEvent) -> Decimal:
    """Exact sum of the images' costs (a float total may carry rounding); the total if none has one."""
    costs = [image.cost_usd for image in ev.images if image.cost_usd is not None]
    if not costs:
        return _money(ev.cost_usd)
    if len(costs) == 1:
        return _money(costs[0])
    return sum(map(_money, costs), Decimal(0))


@lru_cache(maxsize=4096)
def _money(value: float | None) -> Decimal:
    """``money`` memoised: a job bills the same few prices over and over."""
    return money(value)


def _extension(output_format: object, url: str) -> str:
    if isinstance(output_format, str) and output_format:
        return _format_extension(output_format)
    suffix = urlsplit(url).path.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    return suffix if suffix.isalnum() and 0 < len(suffix) <= 5 else "bin"


@lru_cache(maxsize=64)
def _format_extension(output_format: str) -> str:
    return "jpg" if output_format.upper() in ("JPG", "JPEG") else output_format.lower()


def _on_failed(state: LedgerState, ev: FailedEvent) -> None:
    record = state._record(ev.id, ev.fingerprint)
    record.submit = None
    if record.state != SUCCEEDED:
        state._set_state(record, PENDING if ev.retryable else FAILED)


def _on_downloaded(state: LedgerState, ev: DownloadedEvent) -> None:
    if state.undownloaded.pop((ev.task_uuid, ev.index), None) is not None:
        state.downloaded += 1


def _on_download_failed(state: LedgerState, ev: DownloadFailedEvent) -> None:
    state.download_failures += 1


_HANDLERS: dict[type, Callable[[LedgerState, Any], None]] = {
    JobEvent: _on_job,
    RunEvent: _on_run,
    UploadedEvent: _on_uploaded,
    SubmittedEvent: _on_submitted,
    SucceededEvent: _on_succeeded,
    FailedEvent: _on_failed,
    DownloadedEvent: _on_downloaded,
    DownloadFailedEvent: _on_download_failed,
}
