"""What a run ended with: row counts, why it stopped, which models the provider refused, the exit code.

outcome.count("succeeded", model); outcome.stop = Stop.BUDGET
outcome.exit_code()        # 0 all done, 1 some failed/rejected, 3 limit, 5 provider, 130 interrupted
outcome.this_run.add(event)  # what this invocation committed: sent, succeeded, images, exact spend

A model the provider refuses stops alone (``ModelStops``): its rows stay pending, other models go on::

    stops = ModelStops()
    stops.judge(profile, error)     # ModelRefusedError: True (stopped) at once; ModelUnavailableError:
                                    # True at the 3rd in a row; any other error: False
    stops.served("openai:1@2")      # a success in between starts the count again
    "openai:1@2" in stops           # no request for it any more in this run
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pipeline.config.profiles import ModelProfile
from pipeline.errors import (
    ExitCode,
    FatalProviderError,
    ModelRefusedError,
    ModelUnavailableError,
    ProviderError,
)
from pipeline.state.events import Event, SubmittedEvent, SucceededEvent
from pipeline.state.rule import event_cost

if TYPE_CHECKING:  # polars: the CLI reads outcomes without it
    from pipeline.manifest.reader import Reject

__all__ = ["UNAVAILABLE_LIMIT", "ModelStops", "Outcome", "RunTotals", "Stop", "StoppedModel"]

#: ``modelUnavailable`` answers for one model in a row (no success between) after which it is stopped.
UNAVAILABLE_LIMIT = 3


class Stop(enum.Enum):
    """Why dispatching stopped before the manifest was done."""

    BUDGET = "budget"
    RUNTIME = "max_runtime"
    FATAL = "provider"
    INTERRUPT = "interrupted"


_EXIT = {
    Stop.BUDGET: ExitCode.LIMIT,
    Stop.RUNTIME: ExitCode.LIMIT,
    Stop.FATAL: ExitCode.PROVIDER,
    Stop.INTERRUPT: ExitCode.INTERRUPTED,
}


@dataclass
class StoppedModel:
    """A model the provider refused in this run: no request for it was sent after ``error``."""

    model: str
    name: str
    error: ProviderError
    shutdown_date: dt.date | None = None
    replacement: str | None = None
    left_usd: Decimal = Decimal(0)  # estimated cost of its rows that were not sent

    @classmethod
    def of(cls, profile: ModelProfile, error: ProviderError) -> StoppedModel:
        life = profile.lifecycle
        return cls(profile.id, profile.name, error, life.shutdown, life.replacement)


@dataclass
class ModelStops:
    """The models stopped in this run, and the ``modelUnavailable`` streak of each model."""

    stopped: dict[str, StoppedModel] = field(default_factory=dict)
    _streaks: Counter[str] = field(default_factory=Counter)

    def __contains__(self, model: str) -> bool:
        return model in self.stopped

    def judge(self, profile: ModelProfile, error: ProviderError) -> bool:
        """Whether ``error`` stops ``profile``'s model: refused, or unavailable too often in a row."""
        if isinstance(error, ModelRefusedError):
            self.refused(profile, error)
            return True
        if isinstance(error, ModelUnavailableError):
            return self.unavailable(profile, error)
        return False

    def refused(self, profile: ModelProfile, error: ProviderError) -> StoppedModel:
        """Stop ``profile``'s model (the first refusal is the one kept)."""
        if profile.id not in self.stopped:
            self.stopped[profile.id] = StoppedModel.of(profile, error)
        return self.stopped[profile.id]

    def unavailable(self, profile: ModelProfile, error: ProviderError) -> bool:
        """One more ``modelUnavailable`` for the model; True once it is stopped (``UNAVAILABLE_LIMIT``)."""
        self._streaks[profile.id] += 1
        if self._streaks[profile.id] >= UNAVAILABLE_LIMIT:
            self.refused(profile, error)
        return profile.id in self.stopped

    def served(self, model: str) -> None:
        """The model answered with images: its ``modelUnavailable`` streak is over."""
        self._streaks.pop(model, None)

    def leave(self, model: str, estimate: Decimal) -> None:
        """A row of a stopped model was not sent: its estimate is what is left for that model."""
        self.stopped[model].left_usd += estimate


@dataclass
class RunTotals:
    """What one invocation did: tasks sent, rows succeeded and failed, images, exact spend."""

    submitted: int = 0
    succeeded: int = 0
    failed: int = 0  # rows that failed in this run (for good, or out of attempts)
    images: int = 0
    spent_usd: Decimal = Decimal(0)

    def add(self, event: Event) -> None:
        """Count a committed event (the cost rule is the store's: ``event_cost``)."""
        if isinstance(event, SubmittedEvent):
            self.submitted += 1
        elif isinstance(event, SucceededEvent):
            self.succeeded += 1
            self.images += len(event.images)
            self.spent_usd += event_cost(event)

    def summary(self) -> dict[str, Any]:
        """The ``"this_run"`` object of ``pipeline run --json``."""
        return {
            "submitted": self.submitted,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "images": self.images,
            "spent_usd": float(self.spent_usd),
        }


@dataclass
class Outcome:
    """Counts of the manifest's rows by final state (this run's view), and the stop reason."""

    rows: dict[str, int] = field(
        default_factory=lambda: {"succeeded": 0, "failed": 0, "pending": 0, "in_doubt": 0}
    )
    rejects: list[Reject] = field(default_factory=list)
    stop: Stop | None = None
    fatal: FatalProviderError | None = None
    models: ModelStops = field(default_factory=ModelStops)
    unfinished: Counter[str] = field(default_factory=Counter)  # model -> rows left pending or in doubt
    used: set[str] = field(default_factory=set)  # the models of the manifest's rows
    left_usd: Decimal = Decimal(0)  # estimated cost of the rows not sent
    spent_usd: Decimal = Decimal(0)  # across runs (the job's state)
    images: int = 0  # across runs (the job's state)
    this_run: RunTotals = field(default_factory=RunTotals)
    manifest_done: bool = False
    cancelled: bool = False  # a second signal cancelled in-flight work

    def count(self, state: str, model: str | None = None, rows: int = 1) -> None:
        self.rows[state] = self.rows.get(state, 0) + rows
        if model is None:
            return
        self.used.add(model)
        if state in ("pending", "in_doubt"):
            self.unfinished[model] += rows

    @property
    def stopped_models(self) -> list[StoppedModel]:
        return list(self.models.stopped.values())

    @property
    def work_left(self) -> bool:
        return self.rows["pending"] > 0 or self.rows["in_doubt"] > 0 or not self.manifest_done

    def exit_code(self) -> ExitCode:
        if self.cancelled or self.stop is Stop.INTERRUPT:
            return ExitCode.INTERRUPTED
        if self.stop is Stop.FATAL or self.models.stopped:
            # a refused model outranks a limit: more budget or time would not finish its rows
            return ExitCode.PROVIDER
        if self.stop is not None and self.work_left:
            return _EXIT[self.stop]
        if self.rows["failed"] or self.rows["in_doubt"] or self.rows["pending"] or self.rejects:
            return ExitCode.FAILED
        return ExitCode.OK

    def summary(self) -> dict[str, Any]:
        """The ``--json`` payload of ``pipeline run``."""
        rejected = len(self.rejects)
        return {
            "rows": {"total": sum(self.rows.values()) + rejected, "rejected": rejected, **self.rows},
            "images": self.images,
            "spent_usd": float(self.spent_usd),
            "exit_code": self.exit_code(),
            "this_run": self.this_run.summary(),
            "stopped_models": [self._stopped_json(s) for s in self.stopped_models],
        }

    def _stopped_json(self, stopped: StoppedModel) -> dict[str, Any]:
        error = stopped.error
        return {
            "model": stopped.model,
            "code": error.code,
            "status": error.status,
            "message": error.message,
            "shutdown_date": None if stopped.shutdown_date is None else stopped.shutdown_date.isoformat(),
            "replacement": stopped.replacement,
            "pending_rows": self.unfinished[stopped.model],
            "left_usd": float(stopped.left_usd),
        }
