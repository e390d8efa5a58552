"""What the sandbox remembers: accepted tasks (for getResponse and conflicts), uploads and images.

Accepted tasks stay for ``retention_s`` (default three hours) after they complete, so a client that went
away can still collect its result with getResponse an hour later.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import anyio

from pipeline.sandbox.render import ImageSpec
from pipeline.sandbox.validation import InferenceTask

__all__ = ["ImageEntry", "Store", "TaskRecord", "image_uuid_of", "reference_bytes"]

_NAMESPACE = uuid.UUID("6f1c1d2e-3b7a-5c1e-9a51-5a9d8b0c0a11")


def image_uuid_of(task_uuid: str, index: int) -> str:
    """The imageUUID of a task's ``index``-th image: deterministic, so a retried render is identical."""
    return str(uuid.uuid5(_NAMESPACE, f"{task_uuid}:{index}"))


@dataclass(slots=True)
class TaskRecord:
    """An accepted ``imageInference`` task: processing until ``items`` is set."""

    task: InferenceTask
    accepted_at: float
    done: anyio.Event | None = None
    items: list[dict[str, Any]] | None = None
    completed_at: float | None = None


@dataclass(frozen=True, slots=True)
class ImageEntry:
    """An image the sandbox serves: generated (``spec``) or uploaded (``data``)."""

    spec: ImageSpec | None = None
    references: tuple[str, ...] = ()
    data: bytes | None = None
    mime: str = "image/jpeg"


def reference_bytes(ref: str) -> bytes | None:
    """The bytes of an inline reference (data URI or base64); None for a URL."""
    if ref.startswith(("http://", "https://")):
        return None
    payload = ref.partition(";base64,")[2] if ref.startswith("data:") else ref
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None


@dataclass
class Store:
    """Tasks by taskUUID, images by imageUUID, and a small cache of rendered bytes."""

    retention_s: float = 3 * 3600.0
    cache_bytes: int = 256 * 1024 * 1024
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    images: dict[str, ImageEntry] = field(default_factory=dict)
    _rendered: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    _rendered_size: int = 0
    _since_prune: int = 0

    def add_task(self, record: TaskRecord) -> None:
        self.tasks[record.task.task_uuid] = record
        self._since_prune += 1
        if self._since_prune >= 10_000:
            self.prune()

    def prune(self, now: float | None = None) -> None:
        """Forget tasks (and their images) completed more than ``retention_s`` ago."""
        self._since_prune = 0
        cutoff = (time.monotonic() if now is None else now) - self.retention_s
        old = []
        for key, record in self.tasks.items():  # oldest first: stop at the first one accepted since
            if record.accepted_at >= cutoff:
                break
            if record.completed_at is not None and record.completed_at < cutoff:
                old.append(key)
        for key in old:
            record = self.tasks.pop(key)
            for index in range(record.task.number_results):
                self.images.pop(image_uuid_of(key, index), None)

    def has_image(self, image_uuid: str) -> bool:
        return image_uuid in self.images

    def cached(self, image_uuid: str) -> bytes | None:
        data = self._rendered.get(image_uuid)
        if data is not None:
            self._rendered.move_to_end(image_uuid)
        return data

    def cache(self, image_uuid: str, data: bytes) -> None:
        """Keep rendered bytes, evicting the least recently used past ``cache_bytes``."""
        if image_uuid in self._rendered:
            return
        self._rendered[image_uuid] = data
        self._rendered_size += len(data)
        while self._rendered_size > self.cache_bytes and len(self._rendered) > 1:
            _, evicted = self._rendered.popitem(last=False)
            self._rendered_size -= len(evicted)
