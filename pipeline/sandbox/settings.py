"""What the sandbox is told: address, key, latency, fault rates, queue capacity, credit balance, and
which models it plays as retired.

The same fields are keyword arguments of the in-process form, flags of ``pipeline sandbox`` and JSON
fields of ``POST /sandbox/faults``::

    SandboxSettings(latency="uniform:100ms-2s", faults={"429": 0.1, "hang": 0.01}, seed=7)
    SandboxSettings(retire={"openai:1@2": "modelNotFound"})            # refuse one model (404)
    SandboxSettings(lifecycle=True, today=dt.date(2026, 12, 1))        # refuse models past shutdown
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.config import jobspec
from pipeline.config.profiles import ModelProfile, model_profiles
from pipeline.sandbox.wire import MODEL_REFUSAL_CODES

__all__ = [
    "FAULT_KINDS",
    "RETIRE_CODES",
    "Latency",
    "SandboxSettings",
    "parse_duration",
    "parse_latency",
]

#: Every fault the sandbox can inject, in the order a request's roll walks them.
FAULT_KINDS = ("429", "429-retry-after", "403", "500", "503", "504", "hang", "drop", "malformed")

#: How a provider that dropped a model may answer for it (each code has its HTTP status: see ``wire``).
RETIRE_CODES = MODEL_REFUSAL_CODES


def parse_duration(text: str) -> float:
    """Seconds in ``"300ms"``, ``"2s"``, ``"1.5"`` (seconds) or ``"1m"`` (``jobspec.parse_duration``)."""
    return jobspec.parse_duration(text, bare="s")


@dataclass(frozen=True, slots=True)
class Latency:
    """A latency distribution: ``fixed`` (a), ``uniform`` (a..b) or ``lognormal`` (median a, sigma b)."""

    kind: Literal["fixed", "uniform", "lognormal"]
    a: float = 0.0
    b: float = 0.0

    @property
    def is_zero(self) -> bool:
        return self.kind == "fixed" and self.a == 0.0


def parse_latency(text: str) -> Latency:
    """``"0"``, ``"300ms"``, ``"uniform:100ms-2s"`` or ``"lognormal:800ms:0.5"`` (median, sigma)."""
    kind, _, rest = text.strip().partition(":")
    if kind == "uniform":
        low, sep, high = rest.partition("-")
        if not sep:
            raise ValueError(f"uniform latency needs LOW-HIGH: {text!r}")
        a, b = parse_duration(low), parse_duration(high)
        if b < a:
            raise ValueError(f"uniform latency: {high!r} is below {low!r}")
        return Latency("uniform", a, b)
    if kind == "lognormal":
        median, sep, sigma = rest.partition(":")
        if not sep:
            raise ValueError(f"lognormal latency needs MEDIAN:SIGMA: {text!r}")
        s = float(sigma)
        if not math.isfinite(s) or s < 0:
            raise ValueError(f"lognormal sigma must be >= 0: {sigma!r}")
        return Latency("lognormal", parse_duration(median), s)
    return Latency("fixed", parse_duration(text))


class SandboxSettings(BaseModel):
    """How the sandbox behaves. Every field has a working default: a fast, faultless, free sandbox."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="Interface to listen on (loopback by default)")
    port: int = Field(0, ge=0, le=65535, description="0 = a free port")
    api_key: str | None = Field(None, description="The only key accepted; None accepts any non-empty key")
    seed: int | None = Field(None, description="Seed of the fault and latency draws (reproducible chaos)")
    latency: str = Field("0", description='"0", "300ms", "uniform:100ms-2s", "lognormal:800ms:0.5"')
    faults: dict[str, float] = Field(default_factory=dict, description="Rate (0..1) of each fault kind")
    capacity: int | None = Field(None, ge=1, description="429 past this many tasks in flight")
    balance_usd: float | None = Field(None, ge=0, description="Credit; 402 insufficientCredits once spent")
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After of the 429-retry-after fault")
    hang_max_s: float = Field(3600.0, gt=0, description="A hung request gives up after this long")
    lifecycle: bool = Field(False, description="Refuse models past their shutdown date (invalidModel)")
    retire: dict[str, str] = Field(
        default_factory=dict, description="Models refused as retired: model id -> error code"
    )
    today: dt.date | None = Field(None, description="The date --lifecycle judges by; None = today (UTC)")

    @field_validator("latency")
    @classmethod
    def _latency_parses(cls, value: str) -> str:
        parse_latency(value)
        return value

    @field_validator("faults")
    @classmethod
    def _faults_known(cls, faults: dict[str, float]) -> dict[str, float]:
        for kind, rate in faults.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault {kind!r}: rate {rate} is not between 0 and 1")
        if sum(faults.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        return faults

    @field_validator("retire")
    @classmethod
    def _retire_codes_known(cls, retire: dict[str, str]) -> dict[str, str]:
        known = model_profiles()
        for model, code in retire.items():
            if model not in known:  # a typo would otherwise retire nothing, silently
                raise ValueError(f"unknown model {model!r} (known: {', '.join(sorted(known))})")
            if code not in RETIRE_CODES:
                raise ValueError(f"{model}: unknown code {code!r} (known: {', '.join(RETIRE_CODES)})")
        return retire

    @property
    def parsed_latency(self) -> Latency:
        return parse_latency(self.latency)

    def retired_code(self, profile: ModelProfile) -> str | None:
        """The code the model of ``profile`` is refused with as retired (None: it is served)."""
        if profile.id in self.retire:
            return self.retire[profile.id]
        if self.lifecycle and profile.lifecycle.status(self.judged_on()) == "retired":
            return "invalidModel"  # a provider drops a shut-down model from its registry
        return None

    def judged_on(self) -> dt.date:
        return self.today or dt.datetime.now(dt.UTC).date()

    def updated(self, changes: dict[str, Any]) -> SandboxSettings:
        """A copy with ``changes`` applied and validated (``host`` and ``port`` cannot change)."""
        fixed = {"host", "port"} & changes.keys()
        if fixed:
            raise ValueError(f"cannot change {', '.join(sorted(fixed))} while running")
        return SandboxSettings.model_validate({**self.model_dump(), **changes})
