"""Fetching generated images to ``output_dir/images/`` and recording it in the ledger.

    fetcher = Fetcher(http, spec, engine.record)
    await fetcher.fetch(pending)     # PendingDownload from the ledger state; never raises for a failure

A failed download is recorded (``download_failed``) and retried alone by the next run: it never causes a
second generation. A full disk is not one image's problem: it stops the run (``PipelineError``), as the
job's state could not be written either.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import httpx

from pipeline.config.jobspec import JobSpec
from pipeline.errors import PipelineError
from pipeline.run.downloads import DownloadError, download_image, render_filename
from pipeline.run.retry import Backoff, retry_policy
from pipeline.state.events import DownloadedEvent, DownloadFailedEvent
from pipeline.state.rule import PendingDownload

__all__ = ["Fetcher"]

log = logging.getLogger("pipeline.run")


class Fetcher:
    """Downloads images with the job's filename template, a few retries, and ledger events."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        spec: JobSpec,
        record: Callable[[Any], None],
        *,
        attempts: int = 3,
        backoff: Backoff | None = None,
    ) -> None:
        self._http = http
        self._spec = spec
        self.record = record
        self._attempts = attempts
        self._backoff = backoff or Backoff()
        self.images_dir = spec.out_dir / "images"

    async def fetch_all(self, pending: Iterable[PendingDownload], concurrency: int) -> None:
        limiter = anyio.CapacityLimiter(concurrency)

        async def one(p: PendingDownload) -> None:
            async with limiter:
                await self.fetch(p)

        async with anyio.create_task_group() as tg:
            for p in pending:
                tg.start_soon(one, p)

    async def fetch(self, p: PendingDownload) -> None:
        name = render_filename(
            self._spec.output.filename,
            id=p.id,
            index=p.index,
            ext=p.ext,
            task_uuid=p.task_uuid,
            image_uuid=p.image_uuid,
        )
        try:
            async for attempt in retry_policy(self._attempts, backoff=self._backoff):
                with attempt:
                    result = await download_image(
                        self._http, p.image_url, self.images_dir, name, self._spec.output.max_download_bytes
                    )
        except DownloadError as exc:
            if _disk_full(exc):
                raise PipelineError(
                    f"{self.images_dir}: no space left on the device for {name}: free some space and run "
                    "the job again (what was generated is kept and never paid twice)"
                ) from exc
            log.warning("download of %s image %d failed: %s", p.id, p.index, exc)
            self.record(
                DownloadFailedEvent(
                    id=p.id, fingerprint=p.fingerprint, task_uuid=p.task_uuid, index=p.index, message=str(exc)
                )
            )
            return
        self.record(
            DownloadedEvent(
                id=p.id,
                fingerprint=p.fingerprint,
                task_uuid=p.task_uuid,
                index=p.index,
                image_uuid=p.image_uuid,
                path=str(result.path),
                sha256=result.sha256,
                bytes=result.bytes,
            )
        )


_FULL = (errno.ENOSPC, errno.EDQUOT)


def _disk_full(exc: BaseException) -> bool:
    """The download failed because the file system has no room left (not the image's fault)."""
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in _FULL
