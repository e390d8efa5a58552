"""Live progress of a run: counters, and how they are shown on stderr.

    tally = Tally(clock=anyio.current_time)
    tally.done += 1 ...
    format_line(tally.snapshot())      # "120/500 done, 3 failed, 16 in flight, 240 img/min, ETA 1m35s, ..."

A terminal gets a rich live line; anything else gets a plain log line every ``interval`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import anyio
from rich.console import Console
from rich.live import Live
from rich.text import Text

from pipeline.run.limits import Clock

__all__ = ["Snapshot", "Tally", "format_line", "show_progress"]

log = logging.getLogger("pipeline.run")


@dataclass
class Snapshot:
    """What the progress display shows at one moment."""

    seen: int
    done: int
    failed: int
    in_flight: int
    skipped: int
    images: int
    elapsed: float
    spent_usd: Decimal
    projected_usd: Decimal
    manifest_done: bool

    @property
    def images_per_minute(self) -> float:
        return 60.0 * self.images / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        finished = self.done + self.failed
        left = self.seen - self.skipped - finished
        if not self.manifest_done or finished == 0 or self.elapsed <= 0:
            return None
        return left * self.elapsed / finished


class Tally:
    """Counters the engine bumps as rows go by (this run only)."""

    def __init__(self, clock: Clock = anyio.current_time) -> None:
        self._clock = clock
        self.started = clock()
        self.seen = 0  # accepted manifest rows read so far
        self.skipped = 0  # done or failed for good before this run
        self.done = 0
        self.failed = 0
        self.in_flight = 0  # rows in progress (sending, retrying, downloading)
        self.requests_in_flight: Callable[[], int] | None = None  # shown instead, when set
        self.images = 0
        self.manifest_done = False
        self.spent_usd = Decimal(0)  # across runs
        self.run_spent_usd = Decimal(0)
        self.mean_estimate_usd = Decimal(0)

    def snapshot(self) -> Snapshot:
        finished = self.done + self.failed
        left = max(0, self.seen - self.skipped - finished)
        return Snapshot(
            seen=self.seen,
            done=self.done,
            failed=self.failed,
            in_flight=self.in_flight if self.requests_in_flight is None else self.requests_in_flight(),
            skipped=self.skipped,
            images=self.images,
            elapsed=self._clock() - self.started,
            spent_usd=self.spent_usd,
            projected_usd=self.spent_usd + left * self.mean_estimate_usd,
            manifest_done=self.manifest_done,
        )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_line(s: Snapshot) -> str:
    """One line of progress."""
    total = f"{s.seen - s.skipped}" + ("" if s.manifest_done else "+")
    eta = "?" if s.eta_s is None else _duration(s.eta_s)
    return (
        f"{s.done}/{total} done, {s.failed} failed, {s.in_flight} in flight, "
        f"{s.images_per_minute:.0f} img/min, ETA {eta}, "
        f"spent ${s.spent_usd:.3f}, projected ${s.projected_usd:.3f}"
    )


async def show_progress(tally: Tally, console: Console, interval: float = 10.0) -> None:
    """Show progress until cancelled: a live line on a terminal, log lines otherwise."""
    if console.is_terminal:
        with Live(Text(format_line(tally.snapshot())), console=console, refresh_per_second=4) as live:
            while True:
                await anyio.sleep(0.25)
                live.update(Text(format_line(tally.snapshot())))
    while True:
        await anyio.sleep(interval)
        console.print(format_line(tally.snapshot()), highlight=False, markup=False, soft_wrap=True)
