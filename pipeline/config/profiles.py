"""Provider and model profiles: the TOML files under ``configs/``.

A model profile says everything the pipeline needs to know about one Runware model: the top-level keys
its requests may carry, each option (where it goes on the wire, its type, what it allows, its default),
its sizes, reference images, prompt and numberResults bounds, its price and its lifecycle. The manifest
validator, the wire builder, the planner, the budget and the sandbox all read the same profile, so
supporting another model is adding one file to ``configs/models/``::

    profile = load_model_profile("openai:gpt-image@2")
    profile.options["quality"].at             # "settings"
    profile.sizes.allows(1536, 1024)           # True
    profile.image_price(request)               # Decimal list price (or estimate) of one image
    profile.lifecycle.status(dt.date.today())  # "live" / "retiring" / "retired"
"""

from __future__ import annotations

import datetime as dt
import math
import re
import tomllib
from collections.abc import Iterator
from decimal import ROUND_UP, Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.rows import ImageRequest

__all__ = [
    "BOOL_WORDS",
    "LifecycleStatus",
    "ModelProfile",
    "OptionSpec",
    "OptionValue",
    "PriceSpec",
    "ProviderProfile",
    "SizeSpec",
    "camel_case",
    "configs_dir",
    "default_model",
    "load_model_profile",
    "load_provider_profile",
    "model_profiles",
    "option_names",
    "parse_size",
]

OptionValue: TypeAlias = str | int | float | bool
LifecycleStatus: TypeAlias = Literal["live", "retiring", "retired"]
MEGAPIXEL = 1024 * 1024  # pixels of a "1 MP" image in per-megapixel prices (1024x1024 is "1k")

_M = TypeVar("_M", bound=BaseModel)
_WXH = re.compile(r"^(\d+)x(\d+)$")
_CONTAINER = re.compile(r"^(top|settings|providerSettings\.[A-Za-z0-9]+)$")


def configs_dir() -> Path:
    """The folder holding ``providers/`` and ``models/``: packaged copy first, then the repo's."""
    package = Path(__file__).resolve().parents[1]  # pipeline/
    packaged = package / "_configs"
    return packaged if packaged.is_dir() else package.parent / "configs"


def parse_size(size: str) -> tuple[int, int]:
    """``"1024x1536"`` -> ``(1024, 1536)``; ValueError otherwise."""
    match = _WXH.match(size)
    if match is None:
        raise ValueError(f"size {size!r} is not WIDTHxHEIGHT")
    return int(match.group(1)), int(match.group(2))


def camel_case(name: str) -> str:
    """``negative_prompt`` -> ``negativePrompt`` (the wire name of an option, unless it says otherwise)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderProfile(_Strict):
    """Where and how to reach a provider."""

    name: str
    endpoint: str = Field(description='A URL, or "embedded" for the in-process sandbox')
    api_key_env: str = "RUNWARE_API_KEY"
    default_api_key: str | None = Field(
        default=None, description="Key used when the variable is unset (sandbox only)"
    )
    delivery: Literal["sync", "async"] = "sync"

    @property
    def embedded(self) -> bool:
        return self.endpoint == "embedded"


# -- options -------------------------------------------------------------------------------------------


class OptionSpec(_Strict):
    """One request option a model takes: where it goes on the wire, what it allows, its default.

    Values travel through the pipeline as canonical text (``parse``) so that manifests, job specs and
    fingerprints agree whatever the manifest's column types; ``to_wire`` gives the JSON value.
    """

    at: str = Field("top", description='"top", "settings" or "providerSettings.<provider>"')
    wire: str | None = Field(None, description="the Runware parameter; default: the name in camelCase")
    type: Literal["enum", "int", "float", "bool", "str"] = "enum"
    values: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    max_chars: int | None = Field(None, ge=1)
    default: OptionValue | None = Field(None, description="sent when neither the row nor the job sets it")
    note: str = Field("", description="where the fact comes from, when it is not firm")

    @field_validator("at")
    @classmethod
    def _known_container(cls, at: str) -> str:
        if not _CONTAINER.match(at):
            raise ValueError(f'{at!r}: an option goes "top", "settings" or "providerSettings.<provider>"')
        return at

    @model_validator(mode="after")
    def _consistent(self) -> OptionSpec:
        if self.type == "enum" and not self.values:
            raise ValueError("an enum option needs values")
        if self.default is not None:
            self.parse(_text(self.default))
        return self

    def wire_name(self, name: str) -> str:
        return self.wire or camel_case(name)

    def allowed(self) -> str:
        """What the option allows, for messages: ``low, medium, high`` or ``an integer 0..6``."""
        if self.type == "enum":
            return ", ".join(self.values)
        if self.type == "bool":
            return "true or false"
        if self.type == "str":
            return f"text of at most {self.max_chars} characters" if self.max_chars else "text"
        kind = "an integer" if self.type == "int" else "a number"
        low = "" if self.min is None else _number(self.min)
        high = "" if self.max is None else _number(self.max)
        return f"{kind} {low}..{high}" if low or high else kind

    def parse(self, text: str) -> str:
        """The canonical text of a value; ``ValueError`` saying what is allowed."""
        value = text.strip()
        problem = f"{value!r} is not allowed (allowed: {self.allowed()})"
        if self.type == "enum":
            canonical = {v.lower(): v for v in self.values}.get(value.lower())
            if canonical is None:
                raise ValueError(problem)
            return canonical
        if self.type == "bool":
            if value.lower() not in BOOL_WORDS:
                raise ValueError(problem)
            return "true" if BOOL_WORDS[value.lower()] else "false"
        if self.type == "str":
            if self.max_chars is not None and len(value) > self.max_chars:
                raise ValueError(f"{len(value)} characters (allowed: {self.allowed()})")
            return value
        number = _parse_number(value, integer=self.type == "int")
        if number is None or not self._in_range(number):
            raise ValueError(problem)
        return str(int(number)) if self.type == "int" else repr(float(number))

    def _in_range(self, number: float) -> bool:
        return (self.min is None or number >= self.min) and (self.max is None or number <= self.max)

    def to_wire(self, text: str) -> OptionValue:
        """The JSON value of a canonical text."""
        if self.type == "int":
            return int(text)
        if self.type == "float":
            return float(text)
        if self.type == "bool":
            return text == "true"
        return text


BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _text(value: OptionValue) -> str:
    """A TOML value as option text (``true`` for booleans, as a manifest cell would say it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _parse_number(text: str, *, integer: bool) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or (integer and not number.is_integer()):
        return None
    return number


# -- sizes ---------------------------------------------------------------------------------------------


class SizeSpec(_Strict):
    """Which widths and heights a model takes: a fixed list, ``resolution`` tiers with their ratio
    tables, and/or a rule (side range, step, pixel band, aspect band)."""

    fixed: tuple[str, ...] = ()
    tiers: dict[str, tuple[str, ...]] = Field(default_factory=dict, description="resolution -> sizes")
    min_side: int | None = None
    max_side: int | None = None
    step: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    max_aspect: float | None = Field(None, description="longest side / shortest side, at most")
    required: bool = Field(True, description="every request carries width and height (or a resolution)")
    default: str | None = Field(None, description='"WxH" a row gets when nothing sets its size')
    resolution_needs_references: bool = False

    @field_validator("fixed", "default")
    @classmethod
    def _sizes_are_wxh(cls, sizes: tuple[str, ...] | str | None) -> tuple[str, ...] | str | None:
        for size in (sizes,) if isinstance(sizes, str) else sizes or ():
            parse_size(size)
        return sizes

    @property
    def is_rule(self) -> bool:
        return any(v is not None for v in (self.min_side, self.max_side, self.step, self.max_pixels))

    def listed(self) -> tuple[str, ...]:
        """Every size named by the fixed list or a tier (no duplicates, in order)."""
        return tuple(dict.fromkeys([*self.fixed, *(s for sizes in self.tiers.values() for s in sizes)]))

    def allows(self, width: int, height: int) -> bool:
        return self.problem(width, height) is None

    def problem(self, width: int, height: int) -> str | None:
        """Why ``width`` x ``height`` is not allowed (None when it is)."""
        if f"{width}x{height}" in self.listed():
            return None
        if not self.is_rule:
            return f"allowed: {', '.join(self.listed())}"
        for broken, reason in self._rule_checks(width, height):
            if broken:
                return reason
        return None

    def _rule_checks(self, width: int, height: int) -> Iterator[tuple[bool, str]]:
        low, high = min(width, height), max(width, height)
        if self.min_side is not None or self.max_side is not None:
            lo, hi = self.min_side or 1, self.max_side or 100_000
            yield not lo <= low <= high <= hi, f"each side must be {lo}..{hi} px"
        if self.step:
            yield bool(width % self.step or height % self.step), f"sides must be multiples of {self.step}"
        pixels = width * height
        if self.min_pixels is not None:
            yield pixels < self.min_pixels, f"at least {self.min_pixels:,} pixels"
        if self.max_pixels is not None:
            yield pixels > self.max_pixels, f"at most {self.max_pixels:,} pixels"
        if self.max_aspect is not None:
            yield high > low * self.max_aspect, f"aspect ratio at most {_number(self.max_aspect)}:1"

    def describe(self) -> str:
        """One line for people: the list, or the rule, and the tiers."""
        parts = []
        if self.fixed:
            parts.append(", ".join(self.fixed))
        if self.tiers:
            parts.append("resolution " + ", ".join(self.tiers) + " (each with its own sizes)")
        if self.is_rule:
            parts.append(self._describe_rule())
        return "; ".join(parts) or "any"

    def _describe_rule(self) -> str:
        words = []
        if self.min_side or self.max_side:
            words.append(f"{self.min_side or 1}-{self.max_side or '?'} px a side")
        if self.step:
            words.append(f"multiples of {self.step}")
        if self.min_pixels or self.max_pixels:
            words.append(f"{self.min_pixels or 0:,}-{self.max_pixels or 0:,} pixels")
        if self.max_aspect:
            words.append(f"aspect up to {_number(self.max_aspect)}:1")
        return ", ".join(words)

    def tier_of(self, width: int, height: int) -> str | None:
        """The resolution tier whose table lists this size."""
        return next((tier for tier, sizes in self.tiers.items() if f"{width}x{height}" in sizes), None)

    def tier_pixels(self, tier: str) -> int | None:
        """Pixels of the largest size of a tier (what a ``resolution`` request may produce)."""
        sizes = [parse_size(size) for size in self.tiers.get(tier, ())]
        return max((w * h for w, h in sizes), default=None)


# -- prices --------------------------------------------------------------------------------------------


class PriceSpec(_Strict):
    """What one image costs, as a budget should assume it. The provider's ``cost`` is what is billed.

    ``table``: by an option's value (``by``), a price, or a price per size. ``flat``: one price.
    ``tier``: by resolution tier (a width x height counts in the tier whose table lists it).
    ``per_megapixel``: ``first_mp`` for the first MP, ``extra_mp`` for each further one (rounded up).
    ``token``: token-billed; ``table`` holds a conservative estimate per 1 MP image, scaled up by area.
    ``per_input_image`` is added per reference image.
    """

    kind: Literal["table", "flat", "tier", "per_megapixel", "token"]
    usd: Decimal | None = None
    by: str | None = None
    table: dict[str, Decimal | dict[str, Decimal]] = Field(default_factory=dict)
    priced_as: dict[str, str] = Field(default_factory=dict, description='e.g. {auto = "high"}')
    tiers: dict[str, Decimal] = Field(default_factory=dict)
    first_mp: Decimal | None = None
    extra_mp: Decimal | None = None
    per_input_image: Decimal = Decimal(0)
    source: str = ""

    @model_validator(mode="after")
    def _complete(self) -> PriceSpec:
        needs = {
            "flat": self.usd is not None,
            "table": bool(self.table and self.by),
            "token": bool(self.table and self.by),
            "tier": bool(self.tiers),
            "per_megapixel": self.first_mp is not None and self.extra_mp is not None,
        }
        if not needs[self.kind]:
            raise ValueError(f"a {self.kind!r} price is missing its figures")
        return self

    def entry(self, value: str | None) -> Decimal | dict[str, Decimal]:
        key = self.priced_as.get(value or "", value or "")
        if key not in self.table:
            raise KeyError(f"no price for {self.by} {value!r}")
        return self.table[key]


# -- lifecycle -----------------------------------------------------------------------------------------


class Lifecycle(_Strict):
    """When the model came and goes, and what replaces it (with where each fact comes from)."""

    release: dt.date | None = None
    shutdown: dt.date | None = None
    replacement: str | None = None
    source: str = ""

    def status(self, today: dt.date) -> LifecycleStatus:
        if self.shutdown is None:
            return "live"
        return "retired" if today >= self.shutdown else "retiring"

    def days_left(self, today: dt.date) -> int | None:
        return None if self.shutdown is None else (self.shutdown - today).days


# -- the model -----------------------------------------------------------------------------------------


class ReferenceSpec(_Strict):
    """Where reference images go, and how many the model takes (0: none)."""

    field: str = "inputs.referenceImages"
    max: int = Field(0, ge=0)


class PromptSpec(_Strict):
    min_chars: int = Field(1, ge=0)
    max_chars: int = Field(ge=1)


class ModelProfile(_Strict):
    """What a model accepts, where each setting goes on the wire, what it costs, when it retires."""

    id: str
    name: str
    keys: tuple[str, ...] = Field(description="top-level request keys the model declares")
    sizes: SizeSpec
    options: dict[str, OptionSpec] = Field(default_factory=dict)
    references: ReferenceSpec = ReferenceSpec()
    prompt: PromptSpec
    max_number_results: int = Field(20, ge=1)
    output_formats: tuple[str, ...] = ("JPG", "PNG", "WEBP")
    price: PriceSpec
    lifecycle: Lifecycle = Lifecycle()
    job_default: bool = Field(False, description="the model of a job spec that names none")
    typical_latency_s: float = Field(
        20.0, gt=0, description="typical seconds per request, for `pipeline plan`'s time estimate"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelProfile:
        for name, option in self.options.items():
            container = option.at.split(".")[0]
            wire = option.wire_name(name)
            if (wire if container == "top" else container) not in self.keys:
                raise ValueError(f"option {name}: {option.at} is not among the model's keys")
        if self.price.by is not None and self.price.by not in self.options:
            raise ValueError(f"price.by: {self.price.by!r} is not an option of the model")
        if "resolution" in self.options and not self.sizes.tiers and self.price.kind == "tier":
            raise ValueError("a tier price needs sizes.tiers")
        return self

    @property
    def max_reference_images(self) -> int:
        return self.references.max

    def image_price(self, request: ImageRequest) -> Decimal:
        """List price (or conservative estimate) of one image of ``request``."""
        price = self.price
        base = _PRICERS[price.kind](self, request)
        return base + price.per_input_image * len(request.reference_images)

    def estimate_usd(self, request: ImageRequest) -> Decimal:
        """What a budget reserves for ``request``: the price per image times numberResults."""
        return self.image_price(request) * request.number_results

    def pixels(self, request: ImageRequest) -> int:
        """Pixels of one image of ``request`` (for a resolution tier, its largest size)."""
        if request.width is not None and request.height is not None:
            return request.width * request.height
        tier = request.option("resolution")
        pixels = self.sizes.tier_pixels(tier) if tier else None
        if pixels is None and self.sizes.default is not None:
            width, height = parse_size(self.sizes.default)
            pixels = width * height
        return pixels or MEGAPIXEL

    def lifecycle_warning(self, today: dt.date, horizon_days: int = 60) -> str | None:
        """A warning when the model shuts down within ``horizon_days`` or already has."""
        days = self.lifecycle.days_left(today)
        if days is None or days > horizon_days:
            return None
        instead = f"; its replacement is {self.lifecycle.replacement}" if self.lifecycle.replacement else ""
        if days <= 0:
            return f"model {self.id} ({self.name}) was shut down on {self.lifecycle.shutdown}{instead}"
        return (
            f"model {self.id} ({self.name}) shuts down on {self.lifecycle.shutdown}, "
            f"in {days} day{'s' if days != 1 else ''}{instead}"
        )


def _table_price(profile: ModelProfile, request: ImageRequest) -> Decimal:
    price = profile.price
    assert price.by is not None  # checked when the profile loads
    entry = price.entry(request.option(price.by))
    if isinstance(entry, Decimal):
        return entry
    size = f"{request.width}x{request.height}"
    if size not in entry:
        raise KeyError(f"{profile.id} has no price for {price.by} {request.option(price.by)} at {size}")
    return entry[size]


def _token_price(profile: ModelProfile, request: ImageRequest) -> Decimal:
    entry = profile.price.entry(request.option(profile.price.by or ""))
    assert isinstance(entry, Decimal), "a token price is one estimate per 1 MP image"
    scale = max(Decimal(1), Decimal(profile.pixels(request)) / MEGAPIXEL)
    return (entry * scale).quantize(Decimal("0.000001"), rounding=ROUND_UP)


def _tier_price(profile: ModelProfile, request: ImageRequest) -> Decimal:
    tier = request.option("resolution")
    if tier is None and request.width is not None and request.height is not None:
        tier = profile.sizes.tier_of(request.width, request.height)
    if tier is None or tier not in profile.price.tiers:
        raise KeyError(f"{profile.id} has no price for {request.size or 'its default size'}")
    return profile.price.tiers[tier]


def _megapixel_price(profile: ModelProfile, request: ImageRequest) -> Decimal:
    price = profile.price
    assert price.first_mp is not None and price.extra_mp is not None
    megapixels = max(1, math.ceil(profile.pixels(request) / MEGAPIXEL))
    return price.first_mp + price.extra_mp * (megapixels - 1)


def _flat_price(profile: ModelProfile, request: ImageRequest) -> Decimal:
    assert profile.price.usd is not None
    return profile.price.usd


_PRICERS = {
    "table": _table_price,
    "token": _token_price,
    "tier": _tier_price,
    "per_megapixel": _megapixel_price,
    "flat": _flat_price,
}


# -- loading -------------------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from exc


def _validate(cls: type[_M], path: Path, data: dict[str, object]) -> _M:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or None
        raise ConfigError(path, key, str(first["msg"]).removeprefix("Value error, ")) from exc


@cache
def model_profiles() -> dict[str, ModelProfile]:
    """Every model profile in ``configs/models``, by model id (checked against each other)."""
    profiles: dict[str, ModelProfile] = {}
    folder = configs_dir() / "models"
    for path in sorted(folder.glob("*.toml")):
        profile = _validate(ModelProfile, path, _read_toml(path))
        if profile.id in profiles:
            raise ConfigError(path, "id", f"{profile.id!r} is already defined by another profile")
        profiles[profile.id] = profile
    _check_catalog(folder, profiles)
    return profiles


def _check_catalog(folder: Path, profiles: dict[str, ModelProfile]) -> None:
    defaults = [p.id for p in profiles.values() if p.job_default]
    if len(defaults) != 1:
        raise ConfigError(folder, "job_default", f"exactly one profile must be the default, not {defaults}")
    for profile in profiles.values():
        replacement = profile.lifecycle.replacement
        if replacement is not None and replacement not in profiles:
            key = f"{profile.id}: lifecycle.replacement"
            raise ConfigError(folder, key, f"unknown model {replacement!r}")


def default_model() -> str:
    """The model of a job spec that names none (a live one: ``job_default = true`` in its profile)."""
    return next(p.id for p in model_profiles().values() if p.job_default)


@cache
def option_names() -> tuple[str, ...]:
    """Every option any profile declares, sorted: each is a manifest column and a ``[defaults]`` key."""
    return tuple(sorted({name for p in model_profiles().values() for name in p.options}))


def load_model_profile(model_id: str) -> ModelProfile:
    """The profile of ``model_id``; ``KeyError`` names the known models."""
    profiles = model_profiles()
    if model_id not in profiles:
        known = ", ".join(sorted(profiles))
        raise KeyError(f"unknown model {model_id!r} (known: {known})")
    return profiles[model_id]


@cache
def load_provider_profile(name: str) -> ProviderProfile:
    """The provider profile ``configs/providers/<name>.toml``."""
    path = configs_dir() / "providers" / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.toml")))
        raise ConfigError(path, "provider.profile", f"no provider profile {name!r} (known: {known})")
    return _validate(ProviderProfile, path, _read_toml(path))
