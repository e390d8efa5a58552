"""Ledger events: one typed record per state change, one JSON line each.

    ev = SubmittedEvent.for_row(row, task_uuid=t, attempt=1, run_id=r, estimate_usd=0.011)
    line = event_to_json(ev)              # '{"event":"submitted","id":...}'
    event_from_dict(json.loads(line))     # == ev

Events are plain slotted dataclasses (not frozen, for speed on million-line ledgers): treat them as
immutable. Timestamps ``at`` are ISO-8601 UTC strings. Money fields are exact ``Decimal`` USD as billed
(``rows.usd`` reads them), written as JSON numbers, as 0.1 wrote them (a float's shortest text is the
amount's). ``pipeline.state.ledger_file`` reads them from a 0.1 ledger.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from decimal import Decimal
from pathlib import PurePath
from typing import Any, ClassVar, TypeAlias

from pipeline.rows import SCALARS, ImageRequest, ImageResult, Row, usd

__all__ = [
    "DownloadFailedEvent",
    "DownloadedEvent",
    "Event",
    "FailedEvent",
    "ImageResult",
    "JobEvent",
    "RunEvent",
    "SubmittedEvent",
    "SucceededEvent",
    "UploadedEvent",
    "event_from_dict",
    "event_to_dict",
    "event_to_json",
    "request_from_record",
    "request_record",
    "utc_now",
]


def utc_now() -> str:
    """Now as an ISO-8601 UTC string with milliseconds: ``2026-11-23T20:43:35.123Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True, kw_only=True)
class JobEvent:
    """First line of every ledger, written once: the namespace of the job's task UUIDs."""

    kind: ClassVar[str] = "job"
    namespace: str
    job: str
    version: int = 1
    at: str = field(default_factory=utc_now)


@dataclass(slots=True, kw_only=True)
class RunEvent:
    """A run of the job started."""

    kind: ClassVar[str] = "run"
    run_id: str
    at: str = field(default_factory=utc_now)


@dataclass(slots=True, kw_only=True)
class UploadedEvent:
    """A local reference image was uploaded once (``imageUpload``); reuse ``image_uuid`` for its content."""

    kind: ClassVar[str] = "uploaded"
    sha256: str
    image_uuid: str
    at: str = field(default_factory=utc_now)


@dataclass(slots=True, kw_only=True)
class SubmittedEvent:
    """Written and flushed BEFORE the request is sent; enough to rebuild the row's results line."""

    kind: ClassVar[str] = "submitted"
    id: str
    fingerprint: str
    task_uuid: str
    attempt: int
    run_id: str
    estimate_usd: Decimal | None
    request: dict[str, Any]
    passthrough: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        self.estimate_usd = usd(self.estimate_usd)  # exact, as parsed or as given

    @classmethod
    def for_row(
        cls, row: Row, *, task_uuid: str, attempt: int, run_id: str, estimate_usd: float | Decimal | None
    ) -> SubmittedEvent:
        """The event for sending ``row`` as ``task_uuid`` (request fields and passthrough copied)."""
        estimate = usd(estimate_usd)
        return cls(
            id=row.id,
            fingerprint=row.fingerprint,
            task_uuid=task_uuid,
            attempt=attempt,
            run_id=run_id,
            estimate_usd=estimate,
            request=request_record(row.request),
            passthrough=dict(row.passthrough),
        )

    def sent_request(self) -> ImageRequest:
        """The request this event records (``request_from_record``)."""
        return request_from_record(self.request)


def request_record(request: ImageRequest) -> dict[str, Any]:
    """The JSON object of ``request`` in a ``submitted`` event: its fields in order, ``options`` only
    when it sets any (as in 0.1's events)."""
    record: dict[str, Any] = {name: getattr(request, name) for name in SCALARS}
    record["reference_images"] = list(request.reference_images)
    if request.options:
        record["options"] = dict(request.options)
    return record


def request_from_record(record: Mapping[str, Any]) -> ImageRequest:
    """The request a ``submitted`` event's ``request`` object records; a field it lacks is empty (one
    number of results), so a hand-made or foreign event still reads."""
    width, height = record.get("width"), record.get("height")
    return ImageRequest(
        model=str(record.get("model") or ""),
        prompt=str(record.get("prompt") or ""),
        width=None if width is None else int(width),
        height=None if height is None else int(height),
        quality=record.get("quality") or "",
        background=record.get("background") or "",
        output_format=str(record.get("output_format") or ""),
        number_results=int(record.get("number_results") or 1),
        reference_images=tuple(record.get("reference_images") or ()),
        options=tuple(sorted((record.get("options") or {}).items())),
    )


@dataclass(slots=True, kw_only=True)
class SucceededEvent:
    """The provider returned the images. ``cost_usd`` is the sum of their costs (None if none was sent)."""

    kind: ClassVar[str] = "succeeded"
    id: str
    fingerprint: str
    task_uuid: str
    run_id: str
    images: tuple[ImageResult, ...]
    cost_usd: Decimal | None
    at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        self.cost_usd = usd(self.cost_usd)  # exact, as parsed or as given


@dataclass(slots=True, kw_only=True)
class FailedEvent:
    """The attempt failed; ``retryable=False`` means the row failed for good."""

    kind: ClassVar[str] = "failed"
    id: str
    fingerprint: str
    task_uuid: str
    run_id: str
    code: str
    message: str
    retryable: bool
    at: str = field(default_factory=utc_now)


@dataclass(slots=True, kw_only=True)
class DownloadedEvent:
    """Image ``index`` of the task is on disk at ``path``."""

    kind: ClassVar[str] = "downloaded"
    id: str
    fingerprint: str
    task_uuid: str
    index: int
    image_uuid: str
    path: str
    sha256: str
    bytes: int
    at: str = field(default_factory=utc_now)


@dataclass(slots=True, kw_only=True)
class DownloadFailedEvent:
    """Downloading image ``index`` failed; a later run retries the download alone (never the generation)."""

    kind: ClassVar[str] = "download_failed"
    id: str
    fingerprint: str
    task_uuid: str
    index: int
    message: str
    at: str = field(default_factory=utc_now)


Event: TypeAlias = (
    JobEvent
    | RunEvent
    | UploadedEvent
    | SubmittedEvent
    | SucceededEvent
    | FailedEvent
    | DownloadedEvent
    | DownloadFailedEvent
)

_KINDS: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        JobEvent,
        RunEvent,
        UploadedEvent,
        SubmittedEvent,
        SucceededEvent,
        FailedEvent,
        DownloadedEvent,
        DownloadFailedEvent,
    )
}
_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in (*_KINDS.values(), ImageResult)
}


def _json_default(value: Any) -> Any:
    """JSON for what ``json`` cannot encode: dataclasses, dates, Decimal, paths, sets, bytes."""
    if is_dataclass(value) and not isinstance(value, type):
        return {name: getattr(value, name) for name in _FIELDS.get(type(value), ())}
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def event_to_dict(event: Event) -> dict[str, Any]:
    """``{"event": kind, **fields}`` (nested values not converted)."""
    return {"event": event.kind, **{name: getattr(event, name) for name in _FIELDS[type(event)]}}


def event_to_json(event: Event) -> str:
    """One line of strict JSON (no newline). Non-JSON passthrough values are converted, NaN becomes null."""
    payload = event_to_dict(event)
    try:
        return json.dumps(
            payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        )
    except ValueError:
        plain = json.loads(json.dumps(payload, default=_json_default))
        return json.dumps(_finite(plain), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_from_dict(record: Mapping[str, Any]) -> Event | None:
    """The typed event for a parsed line; None for an unknown kind (from a newer version: skipped).

    Raises ``KeyError``/``TypeError``/``ValueError`` when a known kind lacks a field or is malformed.
    """
    cls = _KINDS.get(record["event"])
    if cls is None:
        return None
    kwargs = dict(record)
    del kwargs["event"]
    if cls is SucceededEvent:
        kwargs["images"] = tuple(_image(image) for image in record["images"])
    try:
        event: Event = cls(**kwargs)
    except TypeError:  # fields added by a newer version: keep the ones this version knows
        event = cls(**{name: kwargs[name] for name in _FIELDS[cls] if name in kwargs})
    return event


def _image(image: Mapping[str, Any]) -> ImageResult:
    return ImageResult(**{name: image[name] for name in _FIELDS[ImageResult] if name in image})
