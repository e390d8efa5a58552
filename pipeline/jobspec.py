"""Job specs: ``jobs/*.toml`` loaded into typed, validated configuration.

    spec = load_job_spec("jobs/demo.toml")
    spec.manifest            # absolute Path, resolved against the spec's folder
    spec.limits.concurrency  # 16

Unknown keys, wrong types and bad values raise ``ConfigError`` naming the file, the key and the reason.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from pipeline.errors import ConfigError
from pipeline.profiles import model_profiles
from pipeline.rows import REQUEST_FIELDS

__all__ = [
    "MANIFEST_FIELDS",
    "Defaults",
    "JobSpec",
    "LedgerSettings",
    "Limits",
    "OutputSettings",
    "ProviderSettings",
    "load_job_spec",
    "parse_duration",
]

# Manifest fields a [columns] entry may map to a differently named manifest column.
MANIFEST_FIELDS = ("id", "prompt", "reference_images", "reference_set", *REQUEST_FIELDS)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"`` or ``"300ms"``."""
    compact = text.replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration such as '2h', '90m', '1h30m' or '45s'")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderSettings(_Section):
    """Which provider profile to use, and overrides of it."""

    profile: str = Field("sandbox", description='configs/providers/<profile>.toml: "sandbox" or "runware"')
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    endpoint: str | None = Field(None, description="overrides the profile's endpoint URL")
    delivery: Literal["sync", "async"] | None = Field(None, description="overrides the profile's")


class Defaults(_Section):
    """Request settings for every row; a manifest column of the same name overrides them per row."""

    model: str = "openai:1@2"
    width: int = Field(1024, gt=0)
    height: int = Field(1024, gt=0)
    quality: str = "medium"
    background: str = "opaque"
    output_format: Literal["JPG", "PNG", "WEBP"] = "JPG"
    number_results: int = Field(1, ge=1)


class Limits(_Section):
    """How hard to push the provider, and when to stop."""

    concurrency: int = Field(16, ge=1, le=1024, description="most requests in flight")
    requests_per_minute: float = Field(0, ge=0, description="0 = unlimited")
    images_per_minute: float = Field(0, ge=0, description="0 = unlimited")
    max_attempts: int = Field(5, ge=1, le=100)
    request_timeout_s: float = Field(180, gt=0)
    budget_usd: float | None = Field(None, ge=0, description="hard cap on spend across runs")
    max_runtime: float | None = Field(None, description='stop dispatching after this ("2h")')

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class LedgerSettings(_Section):
    """Durability of the ledger: fsync every line, in groups, or leave it to the OS."""

    fsync: Literal["always", "group", "never"] = "group"
    group_commit_ms: float = Field(200, gt=0, description="longest wait before a group fsync")


class OutputSettings(_Section):
    """What a run writes besides the ledger."""

    download: bool = True
    filename: str = Field("{id}_{index}.{ext}", description="fields: id, index, ext, task_uuid, image_uuid")
    formats: tuple[Literal["parquet", "csv"], ...] = ("parquet",)
    max_download_bytes: int = Field(50 * 1024 * 1024, gt=0, description="refuse larger images")
    results_interval_s: float = Field(30, gt=0, description="how often the results table is rewritten")

    @field_validator("filename")
    @classmethod
    def _known_fields(cls, template: str) -> str:
        allowed = {"id", "index", "ext", "task_uuid", "image_uuid"}
        names = set(re.findall(r"{(\w*)", template))
        if unknown := names - allowed:
            raise ValueError(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return template


def _resolve(value: Any, info: ValidationInfo) -> Any:
    base: Path = (info.context or {})["base_dir"]
    return (base / value).resolve() if isinstance(value, (str, Path)) else value


class JobSpec(_Section):
    """A whole job spec. Paths are absolute, resolved against the spec file's folder."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    manifest: Path
    reference_sets: Path | None = None
    output_dir: Path | None = Field(None, description="default: output/<name> beside the spec's folder")
    provider: ProviderSettings = ProviderSettings()
    defaults: Defaults = Defaults()
    columns: dict[str, str] = Field(default_factory=dict, description="field name -> manifest column")
    limits: Limits = Limits()
    ledger: LedgerSettings = LedgerSettings()
    output: OutputSettings = OutputSettings()
    spec_path: Path = Field(Path(), exclude=True, description="set by load_job_spec")

    _resolve_paths = field_validator("manifest", "reference_sets", "output_dir", mode="before")(_resolve)

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, columns: dict[str, str]) -> dict[str, str]:
        for field, column in columns.items():
            if field not in MANIFEST_FIELDS:
                raise ValueError(f"unknown field {field!r}; fields: {', '.join(MANIFEST_FIELDS)}")
            if not column.strip():
                raise ValueError(f"columns.{field} is empty")
        reused = {c for c in columns.values() if list(columns.values()).count(c) > 1}
        if reused:
            raise ValueError(f"column {sorted(reused)[0]!r} is mapped to more than one field")
        return columns

    @property
    def out_dir(self) -> Path:
        """``output_dir``, or ``output/<name>`` relative to where the spec's ``jobs/`` folder lives."""
        if self.output_dir is not None:
            return self.output_dir
        return _project_root(self.spec_path) / "output" / self.name


def _project_root(spec_path: Path) -> Path:
    folder = spec_path.parent
    return folder.parent if folder.name == "jobs" else folder


def _error_key(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"])


def load_job_spec(path: str | Path) -> JobSpec:
    """Read and validate a job spec; any problem is a ``ConfigError`` (exit 2)."""
    spec_path = Path(path).resolve()
    try:
        with spec_path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(path, None, "no such job spec") from exc
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from exc
    if "spec_path" in raw:
        raise ConfigError(path, "spec_path", "unknown key")
    try:
        spec = JobSpec.model_validate({**raw, "spec_path": spec_path}, context={"base_dir": spec_path.parent})
    except ValidationError as exc:
        error = exc.errors()[0]
        reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        raise ConfigError(path, _error_key(error), reason.removeprefix("Value error, ")) from exc
    _check_defaults(path, spec.defaults)
    return spec


def _check_defaults(path: str | Path, defaults: Defaults) -> None:
    """The defaults must suit the default model's profile (rows may still override them)."""
    profiles = model_profiles()
    profile = profiles.get(defaults.model)
    if profile is None:
        known = ", ".join(sorted(profiles))
        raise ConfigError(path, "defaults.model", f"unknown model {defaults.model!r} (known: {known})")
    checks = (
        ("quality", defaults.quality, profile.qualities),
        ("background", defaults.background, profile.backgrounds),
        ("output_format", defaults.output_format, profile.output_formats),
    )
    for key, value, allowed in checks:
        if value not in allowed:
            reason = f"{value!r} is not allowed for {profile.id} (allowed: {', '.join(allowed)})"
            raise ConfigError(path, f"defaults.{key}", reason)
    if not profile.allows_size(defaults.width, defaults.height):
        reason = f"size {defaults.width}x{defaults.height} is not allowed for {profile.id} "
        raise ConfigError(path, "defaults.width", reason + f"(allowed: {', '.join(profile.sizes)})")
    if defaults.number_results > profile.max_number_results:
        reason = f"at most {profile.max_number_results} for {profile.id}"
        raise ConfigError(path, "defaults.number_results", reason)
