"""Reference images on the wire: local files uploaded once per content, everything else as given.

    refs = ReferenceUploader(client, store.upload_for, record)   # sha256 -> imageUUID uploaded before
    resolved = await refs.resolve(row.request.reference_images)   # local paths -> imageUUIDs
    task = inference_task(row.request, task_uuid, resolved.wire, ...)
    ...                                                 # refused with invalidReferenceImages:
    if resolved.earlier and is_reference_refusal(exc):  # an earlier run's upload the provider forgot
        refs.forget(resolved.earlier)                   # the next resolve uploads those files again

Each distinct content (sha256) is uploaded once per job, across rows and runs: the ``uploaded`` event
remembers its imageUUID in the job's state. Concurrent rows needing the same file share one upload. The
provider may not keep an upload forever (the embedded sandbox never knows an earlier run's), so an
imageUUID from an earlier run that it refuses is forgotten for this run and the file uploaded again, at
most once per run: a content uploaded in this run is never forgotten.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio

from pipeline.errors import PermanentError, PermanentProviderError, ProviderError
from pipeline.manifest.references import is_remote
from pipeline.runware.client import RunwareClient, data_uri_of
from pipeline.state.events import UploadedEvent

__all__ = ["ReferenceUploader", "Resolved", "is_reference_refusal"]

Upload = Callable[[str], Awaitable[str]]
Lookup = Callable[[str], str | None]  # sha256 -> the imageUUID an earlier upload got, if any

# Runware's codes for a reference it cannot use: invalidReferenceImages, imageNotFound, ...ImageNotFound.
_REFERENCE_CODE = re.compile(r"(?i)^invalidReferenceImages?$|ImageNotFound$")


def is_reference_refusal(exc: ProviderError) -> bool:
    """The provider refused the request over its reference images (say, an imageUUID it does not know)."""
    names_references = "referenceimages" in (exc.parameter or "").lower()
    return isinstance(exc, PermanentError) and (names_references or bool(_REFERENCE_CODE.search(exc.code)))


@dataclass(frozen=True)
class Resolved:
    """A row's references as sent, and the contents (sha256) sent as an imageUUID an earlier run uploaded."""

    wire: list[str]
    earlier: frozenset[str]


def _read(path: Path) -> tuple[str, bytes]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), data


class ReferenceUploader:
    """Turns a row's reference images into what the wire accepts, uploading local files once."""

    def __init__(
        self,
        client: RunwareClient,
        uploaded: Lookup,
        record: Callable[[UploadedEvent], None],
        upload: Upload | None = None,
    ) -> None:
        self._uploaded = uploaded  # the job's state: uploads of earlier runs (and committed ones of this)
        self._record = record
        self._upload = upload or client.upload
        self._busy: dict[str, anyio.Event] = {}
        self._fresh: dict[str, str] = {}  # sha256 -> imageUUID uploaded in this run: the provider knows
        self._forgotten: set[str] = set()  # an earlier run's upload the provider refused: upload again

    async def resolve(self, references: Iterable[str]) -> Resolved:
        wire: list[str] = []
        earlier: set[str] = set()
        for reference in references:
            if is_remote(reference):  # the fingerprint's rule too: what it hashes as a file is uploaded
                wire.append(reference)
                continue
            digest = await self._one(Path(reference))
            wire.append(self._image_uuid(digest))
            if digest not in self._fresh:  # read with no await since _one: still the UUID just sent
                earlier.add(digest)
        return Resolved(wire, frozenset(earlier))

    def forget(self, digests: Iterable[str]) -> None:
        """Upload these contents again on their next use, unless this run already did."""
        self._forgotten.update(digest for digest in digests if digest not in self._fresh)

    def _image_uuid(self, digest: str) -> str:
        fresh = self._fresh.get(digest)
        return fresh if fresh is not None else str(self._uploaded(digest))

    def _known(self, digest: str) -> bool:
        if digest in self._fresh:
            return True
        return digest not in self._forgotten and self._uploaded(digest) is not None

    async def _one(self, path: Path) -> str:
        """The sha256 of a local file, uploaded unless its imageUUID is known."""
        try:
            digest, data = await anyio.to_thread.run_sync(_read, path)
        except OSError as exc:
            raise PermanentProviderError(
                message=f"reference image {path}: {exc.strerror or exc}", code="referenceUnreadable"
            ) from None
        while not self._known(digest):
            busy = self._busy.get(digest)
            if busy is not None:
                await busy.wait()  # another row is uploading the same content
                continue
            self._busy[digest] = anyio.Event()
            try:
                image_uuid = await self._upload(data_uri_of(path, data))
                self._record(UploadedEvent(sha256=digest, image_uuid=image_uuid))  # the latest one wins
                self._fresh[digest] = image_uuid
                self._forgotten.discard(digest)
            finally:
                self._busy.pop(digest).set()
        return digest
