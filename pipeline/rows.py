"""The unit of work: one manifest row, validated, with everything needed to generate it.

``manifest`` produces ``Row`` objects (in batches, never all at once); ``engine`` turns each into one
``imageInference`` task; ``results`` carries ``passthrough`` to the results table untouched::

    request = ImageRequest("openai:gpt-image@2", "a red fox", 1024, 1024, "medium", "", "JPG", 1,
                           options=(("moderation", "low"),))
    request.option("quality")    # "medium"; None when unset
    request.option_items()       # (("moderation", "low"), ("quality", "medium")): every option set

Option values are canonical text (``pipeline.config.profiles.OptionSpec.parse``); the model's profile turns
them into wire values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LEGACY_OPTIONS", "REQUEST_FIELDS", "ImageRequest", "Row"]

# Manifest columns that may override the job's [defaults], besides every option a profile declares.
REQUEST_FIELDS = ("model", "width", "height", "output_format", "number_results")

# Options that have their own field (and place in the fingerprint) since version 0.1.
LEGACY_OPTIONS = ("quality", "background")


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """Everything that determines the generated image (and so the fingerprint)."""

    model: str
    prompt: str
    width: int | None  # None: the model picks (or ``resolution`` says)
    height: int | None
    quality: str  # "" when the model takes none, or the row leaves it to the provider
    background: str
    output_format: str
    number_results: int
    # As resolved by the manifest: https URLs, Runware image UUIDs and data URIs as given; local files
    # as absolute paths (the engine uploads each distinct content once and substitutes its imageUUID).
    reference_images: tuple[str, ...] = ()
    # Every other option set, as (name, canonical text), sorted by name ("resolution", "seed", ...).
    options: tuple[tuple[str, str], ...] = ()

    @property
    def size(self) -> str:
        """``"1024x1536"``, the resolution tier, or "" when the model picks."""
        if self.width is not None and self.height is not None:
            return f"{self.width}x{self.height}"
        return self.option("resolution") or ""

    def option(self, name: str) -> str | None:
        """The value of option ``name``, or None when it is not set."""
        if name in LEGACY_OPTIONS:
            value: str = getattr(self, name)
            return value or None
        return next((value for key, value in self.options if key == name), None)

    def option_items(self) -> tuple[tuple[str, str], ...]:
        """Every option set, legacy ones included, sorted by name."""
        legacy = tuple((name, getattr(self, name)) for name in LEGACY_OPTIONS if getattr(self, name))
        return tuple(sorted(legacy + self.options))


@dataclass(frozen=True, slots=True)
class Row:
    """One accepted manifest row."""

    row_number: int  # 1-based data row number in the manifest file, for messages
    id: str
    fingerprint: str
    request: ImageRequest
    passthrough: Mapping[str, Any] = field(default_factory=dict)
