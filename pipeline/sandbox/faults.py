"""Chaos on demand: which fault a request meets, and how long a task takes. Seeded, so reproducible.

dice = FaultDice(settings)
dice.roll()                 # None, or one of FAULT_KINDS
dice.latency()              # seconds this task takes to generate
"""

from __future__ import annotations

import math
import random

from pipeline.sandbox.settings import FAULT_KINDS, Latency, SandboxSettings

__all__ = ["FaultDice", "sample_latency"]


def sample_latency(latency: Latency, rng: random.Random) -> float:
    """One draw from ``latency`` (seconds, never negative)."""
    if latency.kind == "uniform":
        return rng.uniform(latency.a, latency.b)
    if latency.kind == "lognormal":
        if latency.a <= 0:
            return 0.0
        return rng.lognormvariate(math.log(latency.a), latency.b)
    return latency.a


class FaultDice:
    """The fault and latency draws of one sandbox; replaced (re-seeded) when its settings change."""

    def __init__(self, settings: SandboxSettings) -> None:
        self._rates = [(kind, settings.faults.get(kind, 0.0)) for kind in FAULT_KINDS]
        self._any = any(rate > 0 for _, rate in self._rates)
        self._latency = settings.parsed_latency
        self._faults_rng = random.Random(settings.seed)
        self._latency_rng = random.Random(None if settings.seed is None else settings.seed + 1)

    @property
    def quiet(self) -> bool:
        """No faults and no latency: the fast path."""
        return not self._any and self._latency.is_zero

    def roll(self) -> str | None:
        """The fault this request meets, if any (one uniform draw against the cumulative rates)."""
        if not self._any:
            return None
        draw = self._faults_rng.random()
        total = 0.0
        for kind, rate in self._rates:
            total += rate
            if draw < total:
                return kind
        return None

    def latency(self) -> float:
        return 0.0 if self._latency.is_zero else sample_latency(self._latency, self._latency_rng)
