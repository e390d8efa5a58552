"""Reference images on the wire: local files uploaded once per content, everything else as given.

    refs = ReferenceUploader(client, state.uploads, record)
    wire = await refs.resolve(row.request.reference_images)   # local paths -> imageUUIDs

Each distinct content (sha256) is uploaded once per job, across rows and runs: the ``uploaded`` ledger
event remembers its imageUUID. Concurrent rows needing the same file share one upload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import anyio

from pipeline.errors import PermanentProviderError
from pipeline.events import UploadedEvent
from pipeline.runware import RunwareClient, data_uri_of

__all__ = ["ReferenceUploader", "is_local_path"]

Upload = Callable[[str], Awaitable[str]]


def is_local_path(reference: str) -> bool:
    """Local files come from the manifest as absolute paths; URLs, UUIDs and data URIs do not."""
    return reference.startswith("/") or (len(reference) > 2 and reference[1:3] in (":\\", ":/"))


def _read(path: Path) -> tuple[str, bytes]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), data


class ReferenceUploader:
    """Turns a row's reference images into what the wire accepts, uploading local files once."""

    def __init__(
        self,
        client: RunwareClient,
        uploads: dict[str, str],
        record: Callable[[UploadedEvent], None],
        upload: Upload | None = None,
    ) -> None:
        self._uploads = uploads  # sha256 -> imageUUID (the ledger state's own dict)
        self._record = record
        self._upload = upload or client.upload
        self._busy: dict[str, anyio.Event] = {}

    async def resolve(self, references: Iterable[str]) -> list[str]:
        return [await self._one(ref) if is_local_path(ref) else ref for ref in references]

    async def _one(self, reference: str) -> str:
        path = Path(reference)
        try:
            digest, data = await anyio.to_thread.run_sync(_read, path)
        except OSError as exc:
            raise PermanentProviderError(
                message=f"reference image {path}: {exc.strerror or exc}", code="referenceUnreadable"
            ) from None
        while digest not in self._uploads:
            busy = self._busy.get(digest)
            if busy is not None:
                await busy.wait()  # another row is uploading the same content
                continue
            self._busy[digest] = anyio.Event()
            try:
                image_uuid = await self._upload(data_uri_of(path, data))
                self._record(UploadedEvent(sha256=digest, image_uuid=image_uuid))
            finally:
                self._busy.pop(digest).set()
        return self._uploads[digest]
