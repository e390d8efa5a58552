"""The unit of work: one manifest row, validated, with everything needed to generate it.

``manifest`` produces ``Row`` objects (in batches, never all at once); ``engine`` turns each into one
``imageInference`` task; ``results`` carries ``passthrough`` to the results table untouched::

    request = ImageRequest("openai:gpt-image@2", "a red fox", 1024, 1024, "medium", "", "JPG", 1,
                           options=(("moderation", "low"),))
    request.option("quality")    # "medium"; None when unset
    request.option_items()       # (("moderation", "low"), ("quality", "medium")): every option set

Option values are canonical text (``pipeline.config.profiles.OptionSpec.parse``); the model's profile turns
them into wire values. The request's field list is defined here once, and named subsets derive from it::

    FIELDS      # every field, in the order a submitted event records them
    SCALARS     # the fields of one value each: all but reference_images and options
    SETTINGS    # the same but the prompt: model, width, height, ..., output_format, number_results
    SHOWN       # the request columns of the results table

(``pipeline.request_columns`` gives each field's polars dtype.) An ``ImageResult`` is one generated image
of a row's task, as the client reads it and the state records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

__all__ = [
    "FIELDS",
    "LEGACY_OPTIONS",
    "REQUEST_FIELDS",
    "SCALARS",
    "SETTINGS",
    "SHOWN",
    "ImageRequest",
    "ImageResult",
    "Row",
    "usd",
]

# Options that have their own field (and place in the fingerprint) since version 0.1.
LEGACY_OPTIONS: Final = ("quality", "background")


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """Everything that determines the generated image (and so the fingerprint).

    The field order is recorded: a submitted event lists the fields in it (``FIELDS``). Add a field at
    the end; reordering would change the state's JSON lines.
    """

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


FIELDS: Final = tuple(f.name for f in fields(ImageRequest))
# The fields that hold one value each: all but the reference images and the options.
SCALARS: Final = tuple(name for name in FIELDS if name not in ("reference_images", "options"))
# The same but the prompt: what a row sets or the job's [defaults] give.
SETTINGS: Final = tuple(name for name in SCALARS if name != "prompt")
# Manifest columns that may override the job's [defaults], besides every option a profile declares.
REQUEST_FIELDS: Final = tuple(name for name in SETTINGS if name not in LEGACY_OPTIONS)
# The request columns of the results table (the number of results shows as one line per image; the
# options other than quality and background as ``resolution`` and ``options``).
SHOWN: Final = (*(name for name in SETTINGS if name != "number_results"), "prompt")


def usd(value: float | int | str | Decimal | None) -> Decimal | None:
    """The exact amount a money field says; None stays None. Money is a ``Decimal`` from the provider's
    answer to the state and back: a JSON number's float prints as its shortest text, which is the
    provider's, so ``Decimal(str(x))`` is exact, and only a table or a printout turns it into a float."""
    if value is None or isinstance(value, Decimal):
        return value
    return _exact(value)


@lru_cache(maxsize=4096)
def _exact(value: float | int | str) -> Decimal:
    """``Decimal(str(value))``, memoised: a job bills the same few prices over and over (an import of a
    million events converts each)."""
    return Decimal(str(value))


@dataclass(slots=True, kw_only=True)
class ImageResult:
    """One generated image of a succeeded task (not frozen, for speed on million-line states: treat it
    as immutable)."""

    index: int
    image_uuid: str
    image_url: str
    cost_usd: Decimal | None = None

    def __post_init__(self) -> None:
        self.cost_usd = usd(self.cost_usd)  # exact whatever it was given (a parsed JSON float...)


@dataclass(frozen=True, slots=True)
class Row:
    """One accepted manifest row."""

    row_number: int  # 1-based data row number in the manifest file, for messages
    id: str
    fingerprint: str
    request: ImageRequest
    passthrough: Mapping[str, Any] = field(default_factory=dict)
