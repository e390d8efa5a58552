"""How hard to push the provider: an adaptive concurrency window, a pause gate and token buckets.

The concurrency bound (``AdaptiveWindow``) is kept apart from the rate bounds (``TokenBucket``)::

    window = AdaptiveWindow(maximum=16)
    async with window.slot() as slot:
        ...                      # one request in flight
        slot.backoff()           # on 429/503/504: halve the window (multiplicative decrease)
    # leaving without backoff() counts as a success: the window grows by 1/limit (additive increase)

    bucket = TokenBucket(per_minute=600)
    await bucket.acquire(4)      # waits until four tokens are available

Time is injectable (``clock``/``sleep``) so tests run instantly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

__all__ = ["AdaptiveWindow", "Clock", "PauseGate", "Sleep", "Slot", "TokenBucket"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Slot:
    """One place in the window; call ``backoff()`` when the provider said it is overloaded."""

    __slots__ = ("overloaded",)

    def __init__(self) -> None:
        self.overloaded = False

    def backoff(self) -> None:
        self.overloaded = True


class AdaptiveWindow:
    """AIMD concurrency window between ``minimum`` and ``maximum`` requests in flight.

    ``start`` (default ``maximum``) is the initial size; ``probe=True`` lets one request through alone
    until the first answer arrives, so a wrong API key costs one request, not a whole window.
    """

    def __init__(
        self,
        maximum: int,
        *,
        minimum: int = 1,
        decrease: float = 0.5,
        start: int | None = None,
        probe: bool = False,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.maximum = maximum
        self.minimum = minimum
        self.decrease = decrease
        self._limit = float(start if start is not None else maximum)
        self._probing = probe
        self._in_flight = 0
        self._waiters: deque[anyio.Event] = deque()

    @property
    def limit(self) -> int:
        """Requests allowed in flight right now."""
        return 1 if self._probing else max(self.minimum, int(self._limit))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def on_success(self) -> None:
        """Additive increase: +1 per window's worth of successes."""
        self._probing = False
        self._limit = min(float(self.maximum), self._limit + 1.0 / max(self._limit, 1.0))
        self._notify()

    def on_overload(self) -> None:
        """Multiplicative decrease, not below ``minimum``."""
        self._probing = False
        self._limit = max(float(self.minimum), self._limit * self.decrease)
        self._notify()

    def on_answer(self) -> None:
        """Any answer ends the probe without moving the window."""
        if self._probing:
            self._probing = False
            self._notify()

    async def acquire(self) -> None:
        """Take a place, waiting in FIFO order; exactly one waiter is woken per free place."""
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            return
        granted = anyio.Event()
        self._waiters.append(granted)
        try:
            await granted.wait()
        except BaseException:
            if granted.is_set():
                self.release()  # the place was handed over just as we were cancelled: give it back
            else:
                self._waiters.remove(granted)
            raise

    def release(self) -> None:
        self._in_flight -= 1
        self._notify()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Hold one place; success or overload is applied on exit (an exception counts as neither)."""
        await self.acquire()
        slot = Slot()
        try:
            yield slot
        finally:
            self.release()
        if slot.overloaded:
            self.on_overload()
        else:
            self.on_success()

    def _notify(self) -> None:
        """Hand free places to the longest waiters."""
        while self._waiters and self._in_flight < self.limit:
            self._in_flight += 1
            self._waiters.popleft().set()


class PauseGate:
    """Dispatching waits here while a ``Retry-After`` pause is running."""

    def __init__(self, *, clock: Clock = anyio.current_time, sleep: Sleep = anyio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._until = 0.0

    def pause_for(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` from now (never shortens a longer pause)."""
        self._until = max(self._until, self._clock() + max(0.0, seconds))

    @property
    def paused_for(self) -> float:
        return max(0.0, self._until - self._clock())

    async def wait(self) -> None:
        while (delay := self._until - self._clock()) > 0:
            await self._sleep(delay)


class TokenBucket:
    """A rate limit of ``per_minute`` tokens, with bursts up to ``capacity`` (default: 1 s worth, >= 1).

    ``per_minute <= 0`` means unlimited. Waiters are served in order, so a big request is not starved.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        capacity: float | None = None,
        clock: Clock = anyio.current_time,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(1.0, self.rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._last = clock()
        self._lock = anyio.Lock()

    @property
    def unlimited(self) -> bool:
        return self.per_minute <= 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self, tokens: float = 1.0) -> None:
        """Wait until ``tokens`` are available and take them (more than ``capacity`` goes into debt)."""
        if self.unlimited:
            return
        async with self._lock:
            self._refill()
            needed = min(tokens, self.capacity)
            while self._tokens < needed:
                await self._sleep((needed - self._tokens) / self.rate)
                self._refill()
            self._tokens -= tokens
