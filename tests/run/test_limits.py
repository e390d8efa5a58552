"""The adaptive window, the pause gate and the token buckets, on a fake clock."""

from __future__ import annotations

import anyio
import pytest

from pipeline.run.limits import AdaptiveWindow, PauseGate, TokenBucket


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


class TestAdaptiveWindow:
    def test_halves_on_overload_and_grows_back_additively(self) -> None:
        """429/503/504 halve the window; successes add about one per window's worth."""
        window = AdaptiveWindow(16)
        window.on_overload()
        assert window.limit == 8
        window.on_overload()
        assert window.limit == 4
        for _ in range(5):
            window.on_success()
        assert window.limit == 5
        for _ in range(1000):
            window.on_success()
        assert window.limit == 16

    def test_never_below_minimum(self) -> None:
        """However many overloads, at least ``minimum`` requests stay allowed."""
        window = AdaptiveWindow(8, minimum=2)
        for _ in range(20):
            window.on_overload()
        assert window.limit == 2

    def test_probe_lets_one_request_through_until_the_first_answer(self) -> None:
        """With probe, the window is 1 until an answer arrives, then full."""
        window = AdaptiveWindow(32, probe=True)
        assert window.limit == 1
        window.on_answer()
        assert window.limit == 32

    @pytest.mark.anyio
    async def test_bounds_requests_in_flight(self) -> None:
        """No more than ``limit`` slots are held at once."""
        window = AdaptiveWindow(3)
        peak = 0

        async def worker() -> None:
            nonlocal peak
            async with window.slot():
                peak = max(peak, window.in_flight)
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(worker)
        assert peak == 3
        assert window.in_flight == 0

    @pytest.mark.anyio
    async def test_slot_backoff_shrinks_window(self) -> None:
        """A slot marked overloaded halves the window on release."""
        window = AdaptiveWindow(10)
        async with window.slot() as slot:
            slot.backoff()
        assert window.limit == 5

    @pytest.mark.anyio
    async def test_cancelled_waiter_does_not_leak_a_place(self) -> None:
        """A waiter cancelled while queued leaves the window's count intact."""
        window = AdaptiveWindow(1)
        await window.acquire()
        with anyio.move_on_after(0.01):
            await window.acquire()
        window.release()
        assert window.in_flight == 0
        await window.acquire()
        assert window.in_flight == 1


class TestPauseGate:
    @pytest.mark.anyio
    async def test_waits_until_retry_after_passes(self) -> None:
        """A Retry-After pause holds dispatching for exactly that long."""
        clock = FakeClock()
        gate = PauseGate(clock=clock, sleep=clock.sleep)
        gate.pause_for(7.5)
        gate.pause_for(2.0)  # a shorter pause never shortens the longer one
        await gate.wait()
        assert clock.now == pytest.approx(7.5)
        await gate.wait()
        assert clock.now == pytest.approx(7.5)


class TestTokenBucket:
    @pytest.mark.anyio
    async def test_rate_per_minute(self) -> None:
        """120 requests per minute: after the burst, one every half second."""
        clock = FakeClock()
        bucket = TokenBucket(120, clock=clock, sleep=clock.sleep)
        for _ in range(12):
            await bucket.acquire()
        # capacity 2 (one second's worth) then 10 more at 2/s = 5 s
        assert clock.now == pytest.approx(5.0)

    @pytest.mark.anyio
    async def test_images_bucket_takes_several_tokens(self) -> None:
        """A 4-image task takes four tokens of an images-per-minute bucket."""
        clock = FakeClock()
        bucket = TokenBucket(60, capacity=4, clock=clock, sleep=clock.sleep)
        await bucket.acquire(4)
        await bucket.acquire(4)
        assert clock.now == pytest.approx(4.0)

    @pytest.mark.anyio
    async def test_unlimited_never_waits(self) -> None:
        """0 means unlimited."""
        clock = FakeClock()
        bucket = TokenBucket(0, clock=clock, sleep=clock.sleep)
        for _ in range(1000):
            await bucket.acquire(10)
        assert clock.sleeps == []
