"""Fingerprints: one hash of everything that determines a row's images.

A fingerprint is the sha256 (hex) of a canonical text: a version tag, then the request's settings
(``pipeline.rows.SETTINGS``: model, width, height, quality, background, output format, number of results),
the reference keys in order, the other options (only when a row sets any: ``name=value`` sorted by name),
and the prompt last, separated by ``\\x1f`` (reference keys and options by ``\\x1e``; an unset width,
height, quality or background is empty). A request that sets no option beyond 0.1's quality and
background has the text it had in 0.1, so its fingerprint never changes::

    fingerprint(request, ["sha256:9f2c...", "https://x/b.png"])   # '5be1...' (64 hex digits)

A reference key is ``sha256:<hex of the file's content>`` for a local file and the text as given for a
URL, a Runware image UUID or a data URI, so renaming a local file keeps the fingerprint and editing its
pixels changes it. ``request_fingerprint`` computes the keys itself (it reads local files).
The manifest computes the same text vectorised (``fingerprint_text_expr``); tests keep them equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.manifest.references import file_sha256, is_remote
from pipeline.rows import SETTINGS, ImageRequest

if TYPE_CHECKING:  # polars only for the vectorised forms: `pipeline status` never loads it
    import polars as pl

__all__ = [
    "FINGERPRINT_VERSION",
    "fingerprint",
    "fingerprint_text",
    "fingerprint_text_expr",
    "hash_texts",
    "reference_key",
    "request_fingerprint",
    "sha256_digests",
]

FINGERPRINT_VERSION = "image-pipeline/fingerprint/v1"
FIELD_SEP = "\x1f"
REF_SEP = "\x1e"


def reference_key(ref: str) -> str:
    """The fingerprint key of a resolved reference: content hash for a local file, else the text."""
    return ref if is_remote(ref) else f"sha256:{file_sha256(Path(ref))}"


def fingerprint_text(request: ImageRequest, reference_keys: Sequence[str]) -> str:
    """The canonical text that ``fingerprint`` hashes."""
    options = REF_SEP.join(f"{name}={value}" for name, value in sorted(request.options))
    settings = (getattr(request, name) for name in SETTINGS)
    parts = (
        FINGERPRINT_VERSION,
        *("" if value is None else str(value) for value in settings),
        REF_SEP.join(reference_keys),
        *((options,) if options else ()),
        request.prompt,
    )
    return FIELD_SEP.join(parts)


def fingerprint(request: ImageRequest, reference_keys: Sequence[str] = ()) -> str:
    """Pure: the fingerprint of ``request`` given the keys of its references (same order)."""
    return hashlib.sha256(fingerprint_text(request, reference_keys).encode()).hexdigest()


def request_fingerprint(request: ImageRequest) -> str:
    """The fingerprint of ``request``, hashing its local reference files (IO)."""
    return fingerprint(request, [reference_key(ref) for ref in request.reference_images])


def fingerprint_text_expr(ref_keys: pl.Expr, options: Sequence[str] = ()) -> pl.Expr:
    """``fingerprint_text`` over the resolved columns of a manifest frame (``ref_keys``: joined keys;
    ``options``: the frame's option columns besides quality and background, text or null)."""
    import polars as pl

    # Null: an unset width, height, quality or background (the others always have a value).
    settings = [pl.col(name).cast(pl.String).fill_null("") for name in SETTINGS]
    head = [pl.lit(FINGERPRINT_VERSION), *settings, ref_keys.fill_null("")]
    legacy = pl.concat_str([*head, pl.col("prompt")], separator=FIELD_SEP)
    if not options:
        return legacy
    pairs = [pl.concat_str([pl.lit(f"{name}="), pl.col(name)]) for name in sorted(options)]
    text = pl.concat_str(pairs, separator=REF_SEP, ignore_nulls=True)
    with_options = pl.concat_str([*head, text, pl.col("prompt")], separator=FIELD_SEP)
    return pl.when(text.fill_null("") == "").then(legacy).otherwise(with_options)


def sha256_digests(texts: pl.Series) -> list[bytes | None]:
    """sha256 (32 raw bytes) of each text's UTF-8; null stays None. ``hex()`` of one is the text
    ``fingerprint`` gives for the same text."""
    import polars as pl

    sha = hashlib.sha256
    # Binary cells come out as bytes, already UTF-8: no str objects to build and encode again.
    blobs: list[bytes | None] = texts.cast(pl.Binary).to_list()
    return [None if b is None else sha(b).digest() for b in blobs]


def hash_texts(texts: pl.Series, length: int = 64) -> pl.Series:
    """sha256 hex (first ``length`` digits) of each text; null stays null."""
    import polars as pl

    hexes = pl.Series(texts.name, sha256_digests(texts), dtype=pl.Binary).bin.encode("hex")
    return hexes if length >= 64 else hexes.str.slice(0, length)
