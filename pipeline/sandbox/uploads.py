"""``imageUpload``: store an image (data URI, base64 or URL) and answer an imageUUID usable as a reference.

The imageUUID is derived from the content, so uploading the same image twice gives the same UUID.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

import anyio
from PIL import Image, UnidentifiedImageError

from pipeline.sandbox.store import ImageEntry, Store, reference_bytes
from pipeline.sandbox.validation import check_task_uuid
from pipeline.sandbox.wire import invalid_parameter

__all__ = ["upload_image"]

_NAMESPACE = uuid.UUID("0d7c2a55-8a5e-5b8e-b0b4-3c1f4f0a9e27")
_MIMES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


def _sniff(data: bytes) -> str | None:
    """The MIME type of an image's bytes, or None when they are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _MIMES.get(image.format or "", "application/octet-stream")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


async def upload_image(raw: dict[str, Any], store: Store, base_url: str) -> dict[str, Any]:
    """Store the task's ``image``; the result item with its ``imageUUID`` and ``imageURL``."""
    task_uuid = check_task_uuid(raw)
    image = raw.get("image")
    if not isinstance(image, str) or not image:
        raise invalid_parameter("image", "image is required: a data URI, base64 data or a URL.")
    if image.startswith(("http://", "https://")):
        image_uuid = str(uuid.uuid5(_NAMESPACE, image))
        store.images.setdefault(image_uuid, ImageEntry(data=None, references=(image,)))
        return _item(task_uuid, image_uuid, image, base_url)
    data = reference_bytes(image)
    mime = None if not data else await anyio.to_thread.run_sync(_sniff, data)
    if data is None or mime is None:
        raise invalid_parameter("image", "image is not a decodable image (data URI, base64 or URL).")
    image_uuid = str(uuid.uuid5(_NAMESPACE, hashlib.sha256(data).hexdigest()))
    store.images.setdefault(image_uuid, ImageEntry(data=data, mime=mime))
    return _item(task_uuid, image_uuid, None, base_url)


def _item(task_uuid: str, image_uuid: str, url: str | None, base_url: str) -> dict[str, Any]:
    return {
        "taskType": "imageUpload",
        "taskUUID": task_uuid,
        "imageUUID": image_uuid,
        "imageURL": url or f"{base_url}/image/{image_uuid}",
    }
