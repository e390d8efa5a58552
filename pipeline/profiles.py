"""Provider and model profiles: the TOML files under ``configs/``.

A model profile says what a Runware model accepts (sizes, enums, limits) and what it costs; the client,
the manifest validator, the planner and the sandbox all read the same profile, so supporting another
model is adding one file to ``configs/models/``::

    profile = load_model_profile("openai:1@2")
    profile.price_usd("medium", 1024, 1536)   # Decimal("0.015")
"""

from __future__ import annotations

import datetime as dt
import tomllib
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import ConfigError

__all__ = [
    "ModelProfile",
    "ProviderProfile",
    "configs_dir",
    "load_model_profile",
    "load_provider_profile",
    "model_profiles",
]


_M = TypeVar("_M", bound=BaseModel)


def configs_dir() -> Path:
    """The folder holding ``providers/`` and ``models/``: packaged copy first, then the repo's."""
    packaged = Path(__file__).parent / "_configs"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "configs"


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


class ModelProfile(_Strict):
    """What a model accepts and what each image costs."""

    id: str
    name: str
    provider_settings_key: str
    sizes: tuple[str, ...]
    qualities: tuple[str, ...]
    backgrounds: tuple[str, ...]
    output_formats: tuple[str, ...] = ("JPG", "PNG", "WEBP")
    max_reference_images: int = Field(ge=0)
    max_prompt_chars: int = Field(ge=1)
    max_number_results: int = Field(ge=1)
    unsupported_parameters: tuple[str, ...] = ()
    auto_priced_as: str = "high"
    shutdown_date: dt.date | None = None
    typical_latency_s: float = Field(
        20.0, gt=0, description="typical seconds per request, for `pipeline plan`'s time estimate"
    )
    prices: dict[str, dict[str, Decimal]]

    @field_validator("sizes")
    @classmethod
    def _sizes_are_wxh(cls, sizes: tuple[str, ...]) -> tuple[str, ...]:
        for size in sizes:
            width, _, height = size.partition("x")
            if not (width.isdigit() and height.isdigit()):
                raise ValueError(f"size {size!r} is not WIDTHxHEIGHT")
        return sizes

    def allows_size(self, width: int, height: int) -> bool:
        return f"{width}x{height}" in self.sizes

    def price_usd(self, quality: str, width: int, height: int) -> Decimal:
        """List price of one image; ``auto`` is priced as ``auto_priced_as`` for budgeting."""
        tier = self.auto_priced_as if quality == "auto" else quality
        try:
            return self.prices[tier][f"{width}x{height}"]
        except KeyError:
            raise KeyError(f"{self.id} has no price for {quality} {width}x{height}") from None

    def days_to_shutdown(self, today: dt.date) -> int | None:
        return None if self.shutdown_date is None else (self.shutdown_date - today).days

    def lifecycle_warning(self, today: dt.date, horizon_days: int = 60) -> str | None:
        """A warning when the model shuts down within ``horizon_days`` or already has."""
        days = self.days_to_shutdown(today)
        if days is None or days > horizon_days:
            return None
        if days < 0:
            return f"model {self.id} ({self.name}) was shut down on {self.shutdown_date}"
        return (
            f"model {self.id} ({self.name}) shuts down on {self.shutdown_date}, "
            f"in {days} day{'s' if days != 1 else ''}: plan a move to another model"
        )


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
        raise ConfigError(path, key, first["msg"]) from exc


@cache
def model_profiles() -> dict[str, ModelProfile]:
    """Every model profile in ``configs/models``, by model id."""
    profiles: dict[str, ModelProfile] = {}
    for path in sorted((configs_dir() / "models").glob("*.toml")):
        profile = _validate(ModelProfile, path, _read_toml(path))
        profiles[profile.id] = profile
    return profiles


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
