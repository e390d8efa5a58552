"""Fingerprints: one hash of everything that determines a row's images.

A fingerprint is the sha256 (hex) of a canonical text: a version tag, then model, width, height, quality,
background, output format, number of results, the reference keys in order, and the prompt last,
separated by ``\\x1f`` (reference keys by ``\\x1e``)::

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

import polars as pl

from pipeline.references import file_sha256, is_remote
from pipeline.rows import ImageRequest

__all__ = [
    "FINGERPRINT_VERSION",
    "fingerprint",
    "fingerprint_text",
    "fingerprint_text_expr",
    "hash_texts",
    "reference_key",
    "request_fingerprint",
]

FINGERPRINT_VERSION = "image-pipeline/fingerprint/v1"
FIELD_SEP = "\x1f"
REF_SEP = "\x1e"


def reference_key(ref: str) -> str:
    """The fingerprint key of a resolved reference: content hash for a local file, else the text."""
    return ref if is_remote(ref) else f"sha256:{file_sha256(Path(ref))}"


def fingerprint_text(request: ImageRequest, reference_keys: Sequence[str]) -> str:
    """The canonical text that ``fingerprint`` hashes."""
    parts = (
        FINGERPRINT_VERSION,
        request.model,
        str(request.width),
        str(request.height),
        request.quality,
        request.background,
        request.output_format,
        str(request.number_results),
        REF_SEP.join(reference_keys),
        request.prompt,
    )
    return FIELD_SEP.join(parts)


def fingerprint(request: ImageRequest, reference_keys: Sequence[str] = ()) -> str:
    """Pure: the fingerprint of ``request`` given the keys of its references (same order)."""
    return hashlib.sha256(fingerprint_text(request, reference_keys).encode()).hexdigest()


def request_fingerprint(request: ImageRequest) -> str:
    """The fingerprint of ``request``, hashing its local reference files (IO)."""
    return fingerprint(request, [reference_key(ref) for ref in request.reference_images])


def fingerprint_text_expr(ref_keys: pl.Expr) -> pl.Expr:
    """``fingerprint_text`` over the resolved columns of a manifest frame (``ref_keys``: joined keys)."""
    return pl.concat_str(
        [
            pl.lit(FINGERPRINT_VERSION),
            pl.col("model"),
            pl.col("width").cast(pl.String),
            pl.col("height").cast(pl.String),
            pl.col("quality"),
            pl.col("background"),
            pl.col("output_format"),
            pl.col("number_results").cast(pl.String),
            ref_keys.fill_null(""),
            pl.col("prompt"),
        ],
        separator=FIELD_SEP,
    )


def hash_texts(texts: pl.Series, length: int = 64) -> pl.Series:
    """sha256 hex (first ``length`` digits) of each text; null stays null."""
    sha = hashlib.sha256
    return pl.Series(
        texts.name,
        [None if t is None else sha(t.encode()).hexdigest()[:length] for t in texts.to_list()],
        dtype=pl.String,
    )
