"""Reference images: parse a manifest cell, tell remote from local, resolve and hash local files.

A reference is an ``https://`` (or ``http://``) URL, a Runware image UUID, a data URI, or a local file
path relative to the manifest (or to the reference-sets file). Local files become absolute paths and
are identified by the sha256 of their content, so moving or renaming a file changes nothing::

    split_references('a.png|https://x/b.png')       # ['a.png', 'https://x/b.png']
    resolver = ReferenceResolver(Path("jobs"))
    resolver.resolve("refs/a.png")                  # ('/abs/jobs/refs/a.png', 'sha256:9f2c...')
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import ReferenceProblem

__all__ = [
    "CONTROL_PATTERN",
    "REMOTE_PATTERN",
    "ReferenceProblem",
    "ReferenceResolver",
    "file_sha256",
    "is_remote",
    "split_references",
]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")
_CACHE_LIMIT = 100_000
# The same tests as regular expressions, for polars (vectorised): remote references need no Python.
REMOTE_PATTERN = r"^(?i:https?://|data:)|^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
CONTROL_PATTERN = r"[\x00-\x1f\x7f]"


def is_remote(ref: str) -> bool:
    """True for URLs, data URIs and Runware image UUIDs: sent as given, never read from disk."""
    lowered = ref[:8].lower()
    return lowered.startswith(("https://", "http://", "data:")) or bool(_UUID.match(ref))


def split_references(value: object) -> list[str]:
    """The references in one manifest cell: a list, a JSON array string or a ``|``-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ReferenceProblem(f"reference_images is not a valid JSON array: {exc.msg}") from None
            return _strings(parsed)
        return [part.strip() for part in text.split("|") if part.strip()]
    return _strings(value)


def _strings(items: object) -> list[str]:
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise ReferenceProblem("reference_images must be a list of strings")
    out = []
    for item in items:
        if item is None:
            continue
        if not isinstance(item, str):
            raise ReferenceProblem(f"reference image {item!r} is not a string")
        if item.strip():
            out.append(item.strip())
    return out


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class ReferenceResolver:
    """Resolves references of one manifest; each distinct local file is read and hashed once."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self._cache: dict[str, tuple[str, str] | str] = {}

    def resolve(self, ref: str) -> tuple[str, str]:
        """``(as sent to the engine, fingerprint key)``; raises ``ReferenceProblem`` for a bad one."""
        cached = self._cache.get(ref)
        if cached is None:
            cached = self._resolve_uncached(ref)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[ref] = cached
        if isinstance(cached, str):
            raise ReferenceProblem(cached)
        return cached

    def _resolve_uncached(self, ref: str) -> tuple[str, str] | str:
        if _CONTROL.search(ref):
            return f"reference image {ref[:60]!r} contains control characters"
        if is_remote(ref):
            return (ref, ref)
        path = (self.base_dir / ref).resolve()
        if not path.is_file():
            return f"reference image not found: {ref} (looked for {path})"
        try:
            with path.open("rb") as f:
                head = f.read(12)
            digest = file_sha256(path)
        except OSError as exc:
            return f"cannot read reference image {ref}: {exc.strerror or exc}"
        if not _looks_like_image(head):
            return f"reference image {ref} is not a PNG, JPEG or WEBP file"
        return (str(path), f"sha256:{digest}")


def _looks_like_image(head: bytes) -> bool:
    if head.startswith(b"RIFF"):
        return head[8:12] == b"WEBP"
    return head.startswith(_IMAGE_MAGIC)
