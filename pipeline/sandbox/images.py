"""Generated images: registered when a task completes, rendered on first fetch (in a thread), cached.

item = images.register(task, 0, base_url)       # the result item, with imageUUID and imageURL
items = await images.deliver(task, [item])      # as the task's outputType asks (URL, base64, data URI)
found = await images.fetch("<imageUUID>.jpg")   # (bytes, mime) or None
"""

from __future__ import annotations

import base64
from typing import Any

import anyio

from pipeline.runware.wire import data_uri
from pipeline.sandbox.render import EXTENSIONS, MIME_TYPES, ImageSpec, decode_reference, render_image
from pipeline.sandbox.store import ImageEntry, Store, image_uuid_of, reference_bytes
from pipeline.sandbox.validation import InferenceTask

__all__ = ["Images"]


class Images:
    """The images of one sandbox, over its ``Store``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def register(self, task: InferenceTask, index: int, base_url: str) -> dict[str, Any]:
        """Make the ``index``-th image of ``task`` servable; its result item (as Runware answers)."""
        image_uuid = image_uuid_of(task.task_uuid, index)
        spec = ImageSpec(
            task_uuid=task.task_uuid,
            index=index,
            prompt=task.prompt,
            width=task.width,
            height=task.height,
            output_format=task.output_format,
            output_quality=task.output_quality,
            transparent=task.option("background") == "transparent",
        )
        self._store.images[image_uuid] = ImageEntry(
            spec, task.references, mime=MIME_TYPES[task.output_format]
        )
        item: dict[str, Any] = {
            "taskType": "imageInference",
            "taskUUID": task.task_uuid,
            "imageUUID": image_uuid,
            "imageURL": f"{base_url}/image/{image_uuid}.{EXTENSIONS[task.output_format]}",
        }
        if task.include_cost:
            item["cost"] = float(task.image_cost(index))
        return item

    async def deliver(
        self, task: InferenceTask, items: list[dict[str, Any]], status: str | None = None
    ) -> list[dict[str, Any]]:
        """``items`` in the task's ``outputType`` (rendering them if it asks for the bytes)."""
        if task.output_type == "URL" and status is None:
            return items
        out = []
        for item in items:
            item = dict(item)
            if status is not None:
                item["status"] = status
            if task.output_type != "URL":
                found = await self.fetch(item["imageUUID"])
                assert found is not None
                data, mime = found
                del item["imageURL"]
                if task.output_type == "base64Data":
                    item["imageBase64Data"] = base64.b64encode(data).decode("ascii")
                else:
                    item["imageDataURI"] = data_uri(data, mime)
            out.append(item)
        return out

    async def fetch(self, name: str) -> tuple[bytes, str] | None:
        """The bytes and MIME type of the image ``<imageUUID>[.ext]``, or None if there is none."""
        image_uuid = name.partition(".")[0]
        entry = self._store.images.get(image_uuid)
        if entry is None or (entry.data is None and entry.spec is None):
            return None  # unknown, or an uploaded URL (not fetched)
        if entry.data is not None:
            return entry.data, entry.mime
        data = self._store.cached(image_uuid)
        if data is None:
            data = await anyio.to_thread.run_sync(self._render, entry)
            self._store.cache(image_uuid, data)
        return data, entry.mime

    def _render(self, entry: ImageEntry) -> bytes:
        assert entry.spec is not None
        thumbnails = [self._thumbnail(ref) for ref in entry.references]
        return render_image(entry.spec, thumbnails)

    def _thumbnail(self, ref: str) -> Any:
        entry = self._store.images.get(ref)
        data = entry.data if entry is not None else reference_bytes(ref)
        return None if data is None else decode_reference(data)
