"""Image downloads: stream to a temp file beside the target, cap the size, fsync, rename.

    name = render_filename(spec.output.filename, id=row_id, index=0, ext="jpg", task_uuid=t, image_uuid=u)
    result = await download_image(client, url, out_dir / "images", name, spec.output.max_download_bytes)
    result.path, result.sha256, result.bytes

A failed download never regenerates the image: the engine records ``download_failed`` and a later run
retries the download alone (``pending_downloads(store)``). Errors are typed: ``TransientDownloadError``
(network, 5xx, 408/429) may succeed later; ``PermanentDownloadError`` (404, too large, bad URL) will not.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio.to_thread
import httpx

from pipeline.errors import (
    DownloadError,
    DownloadTooLargeError,
    PermanentDownloadError,
    PipelineError,
    TransientDownloadError,
)
from pipeline.state import Store
from pipeline.state.rule import PendingDownload

__all__ = [
    "DownloadError",
    "DownloadResult",
    "DownloadTooLargeError",
    "PendingDownload",
    "PermanentDownloadError",
    "TransientDownloadError",
    "download_image",
    "pending_downloads",
    "render_filename",
    "sanitize_component",
]

_CHUNK = 64 * 1024
_MAX_FILENAME_BYTES = 200  # well under the 255 of common filesystems, leaving room for temp suffixes
_MAX_ID_CHARS = 100
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """A downloaded image, complete on disk."""

    path: Path
    sha256: str
    bytes: int


def pending_downloads(store: Store) -> list[PendingDownload]:
    """Images of succeeded rows with no ``downloaded`` event yet, oldest first (an indexed lookup)."""
    return store.undownloaded()


# -- file names ----------------------------------------------------------------------------------------


def sanitize_component(text: str, max_chars: int = _MAX_ID_CHARS) -> str:
    """``text`` as one safe file-name component: no separators, control characters, leading dots or ``..``.

    When anything had to change, a short hash of the original is appended so that distinct ids keep
    distinct file names (``"a/b"`` -> ``"a_b-1f2e3d4c"``).
    """
    cleaned = "".join(_safe_char(c) for c in unicodedata.normalize("NFC", text))
    while ".." in cleaned:
        cleaned = cleaned.replace("..", "_")
    cleaned = cleaned.lstrip(". ").rstrip(" ")[:max_chars] or "_"
    if cleaned == text:
        return cleaned
    return f"{cleaned}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def _safe_char(c: str) -> str:
    if c in "/\\" or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return "_"
    return c


def render_filename(template: str, *, id: str, index: int, ext: str, task_uuid: str, image_uuid: str) -> str:
    """The file name of one image from the job's ``output.filename`` template, always inside its folder.

    Every field is sanitised, and so is the rendered name (a ``/`` in the template does not make folders).
    """
    fields = {
        "id": sanitize_component(id),
        "index": index,
        "ext": sanitize_component(ext.lower(), 10),
        "task_uuid": sanitize_component(task_uuid),
        "image_uuid": sanitize_component(image_uuid),
    }
    try:
        rendered = template.format(**fields)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise PipelineError(f"output.filename {template!r} cannot be rendered: {exc}") from exc
    name = sanitize_component(rendered, max_chars=10_000)
    return _cap_bytes(name, _MAX_FILENAME_BYTES)


def _cap_bytes(name: str, limit: int) -> str:
    """Shorten ``name`` to ``limit`` UTF-8 bytes, keeping its extension and a hash of the full name."""
    if len(name.encode()) <= limit:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix) > 10:
        stem, suffix = name, ""
    tail = f"-{hashlib.sha256(name.encode()).hexdigest()[:12]}" + (f".{suffix}" if suffix else "")
    budget = limit - len(tail.encode())
    short = stem.encode()[:budget].decode("utf-8", "ignore")
    return short + tail


# -- downloading ---------------------------------------------------------------------------------------


async def download_image(
    client: httpx.AsyncClient, url: str, dest_dir: str | Path, filename: str, max_bytes: int
) -> DownloadResult:
    """Fetch ``url`` into ``dest_dir/filename`` atomically: complete and fsynced, or not there at all.

    Raises ``TransientDownloadError``, ``PermanentDownloadError`` or ``DownloadTooLargeError``.
    """
    dest = Path(dest_dir)
    target = dest / filename
    if target.parent != dest or filename in ("", ".", ".."):
        raise PermanentDownloadError(url, f"file name {filename!r} is not a plain file name")
    fd, tmp = await anyio.to_thread.run_sync(_temp_file, dest)
    try:
        with os.fdopen(fd, "wb") as f:
            digest, size = await _stream_to(client, url, f, max_bytes)
            f.flush()
            await anyio.to_thread.run_sync(os.fsync, f.fileno())
        await anyio.to_thread.run_sync(os.replace, tmp, target)
    except BaseException:
        _discard(tmp)  # synchronously: it must happen even when the task is being cancelled
        raise
    return DownloadResult(path=target, sha256=digest, bytes=size)


def _temp_file(dest: Path) -> tuple[int, str]:
    dest.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=".download-", suffix=".part", dir=dest)


def _discard(tmp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


async def _stream_to(client: httpx.AsyncClient, url: str, f: IO[bytes], max_bytes: int) -> tuple[str, int]:
    write = f.write
    digest = hashlib.sha256()
    size = 0
    try:
        async with client.stream("GET", url, follow_redirects=True) as response:
            _check_status(url, response)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadTooLargeError(url, f"{declared} bytes is more than the {max_bytes}-byte limit")
            async for chunk in response.aiter_bytes(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadTooLargeError(url, f"more than the {max_bytes}-byte limit")
                digest.update(chunk)
                write(chunk)
    except DownloadError:
        raise
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise PermanentDownloadError(url, f"bad URL ({exc})") from exc
    except httpx.HTTPError as exc:  # timeouts, connection errors, protocol errors, decoding errors
        raise TransientDownloadError(url, f"{type(exc).__name__}: {exc or 'no detail'}") from exc
    except OSError as exc:
        raise TransientDownloadError(url, f"cannot write the image: {exc.strerror or exc}") from exc
    if size == 0:
        raise TransientDownloadError(url, "empty response body")
    return digest.hexdigest(), size


def _check_status(url: str, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status >= 500 or status in _TRANSIENT_STATUSES:
        raise TransientDownloadError(url, reason, status)
    raise PermanentDownloadError(url, reason, status)
