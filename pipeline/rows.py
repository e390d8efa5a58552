"""The unit of work: one manifest row, validated, with everything needed to generate it.

``manifest`` produces ``Row`` objects (in batches, never all at once); ``engine`` turns each into one
``imageInference`` task; ``results`` carries ``passthrough`` to the results table untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REQUEST_FIELDS", "ImageRequest", "Row"]

# Manifest columns that may override the job's [defaults], in wire order.
REQUEST_FIELDS = (
    "model",
    "width",
    "height",
    "quality",
    "background",
    "output_format",
    "number_results",
)


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """Everything that determines the generated image (and so the fingerprint)."""

    model: str
    prompt: str
    width: int
    height: int
    quality: str
    background: str
    output_format: str
    number_results: int
    # As resolved by the manifest: https URLs, Runware image UUIDs and data URIs as given; local files
    # as absolute paths (the engine uploads each distinct content once and substitutes its imageUUID).
    reference_images: tuple[str, ...] = ()

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, slots=True)
class Row:
    """One accepted manifest row."""

    row_number: int  # 1-based data row number in the manifest file, for messages
    id: str
    fingerprint: str
    request: ImageRequest
    passthrough: Mapping[str, Any] = field(default_factory=dict)
