"""What a run ended with: row counts, why it stopped, and the exit code that follows.

outcome.count("succeeded"); outcome.stop = Stop.BUDGET
outcome.exit_code()        # 0 all done, 1 some failed/rejected, 3 limit, 5 provider, 130 interrupted
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pipeline.errors import FatalProviderError

__all__ = ["Outcome", "Stop"]


class Stop(enum.Enum):
    """Why dispatching stopped before the manifest was done."""

    BUDGET = "budget"
    RUNTIME = "max_runtime"
    FATAL = "provider"
    INTERRUPT = "interrupted"


_EXIT = {Stop.BUDGET: 3, Stop.RUNTIME: 3, Stop.FATAL: 5, Stop.INTERRUPT: 130}


@dataclass
class Outcome:
    """Counts of the manifest's rows by final state (this run's view), and the stop reason."""

    rows: dict[str, int] = field(
        default_factory=lambda: {"succeeded": 0, "failed": 0, "pending": 0, "in_doubt": 0}
    )
    rejects: list[Any] = field(default_factory=list)
    stop: Stop | None = None
    fatal: FatalProviderError | None = None
    left_usd: Decimal = Decimal(0)  # estimated cost of the rows not sent
    spent_usd: Decimal = Decimal(0)  # across runs
    images: int = 0
    manifest_done: bool = False
    cancelled: bool = False  # a second signal cancelled in-flight work

    def count(self, state: str) -> None:
        self.rows[state] = self.rows.get(state, 0) + 1

    @property
    def work_left(self) -> bool:
        return self.rows["pending"] > 0 or self.rows["in_doubt"] > 0 or not self.manifest_done

    def exit_code(self) -> int:
        if self.cancelled:
            return 130
        if self.stop is not None and (self.stop is not Stop.BUDGET and self.stop is not Stop.RUNTIME):
            return _EXIT[self.stop]
        if self.stop is not None and self.work_left:
            return 3
        if self.rows["failed"] or self.rows["in_doubt"] or self.rows["pending"] or self.rejects:
            return 1
        return 0

    def summary(self) -> dict[str, Any]:
        """The ``--json`` payload of ``pipeline run``."""
        rejected = len(self.rejects)
        return {
            "rows": {"total": sum(self.rows.values()) + rejected, "rejected": rejected, **self.rows},
            "images": self.images,
            "spent_usd": float(self.spent_usd),
            "exit_code": self.exit_code(),
        }
