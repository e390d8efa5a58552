"""The one retry policy: transient errors retried with growing, jittered waits; others not."""

from __future__ import annotations

import gc
import random

import pytest
from tenacity import AsyncRetrying

from pipeline.errors import FatalProviderError, PermanentProviderError, TransientProviderError
from pipeline.run.retry import Backoff, attempts, is_retryable, retry_policy


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _transient(retry_after: float | None = None) -> TransientProviderError:
    return TransientProviderError(message="busy", code="http503", status=503, retry_after=retry_after)


class TestPolicy:
    @pytest.mark.anyio
    async def test_retries_transient_then_succeeds(self) -> None:
        """503, 503, then success: two waits, growing."""
        rec = Recorder()
        calls = 0
        async for attempt in retry_policy(5, backoff=Backoff(rng=random.Random(1)), sleep=rec.sleep):
            with attempt:
                calls += 1
                if calls < 3:
                    raise _transient()
        assert calls == 3
        assert len(rec.sleeps) == 2
        assert 0.25 <= rec.sleeps[0] <= 0.5
        assert 0.5 <= rec.sleeps[1] <= 1.0

    @pytest.mark.anyio
    async def test_gives_up_after_max_attempts_with_the_last_error(self) -> None:
        """Attempts run out: the last transient error is raised as is."""
        rec = Recorder()
        calls = 0
        with pytest.raises(TransientProviderError):
            async for attempt in retry_policy(3, sleep=rec.sleep):
                with attempt:
                    calls += 1
                    raise _transient()
        assert calls == 3

    @pytest.mark.anyio
    @pytest.mark.parametrize("error", [PermanentProviderError, FatalProviderError])
    async def test_permanent_and_fatal_are_not_retried(self, error: type[Exception]) -> None:
        """A permanent or fatal error goes straight through."""
        rec = Recorder()
        calls = 0
        with pytest.raises(error):
            async for attempt in retry_policy(5, sleep=rec.sleep):
                with attempt:
                    calls += 1
                    raise error(message="no")
        assert calls == 1
        assert rec.sleeps == []

    @pytest.mark.anyio
    async def test_honours_retry_after(self) -> None:
        """The wait is never shorter than the provider's Retry-After."""
        rec = Recorder()
        calls = 0
        async for attempt in retry_policy(2, sleep=rec.sleep):
            with attempt:
                calls += 1
                if calls == 1:
                    raise _transient(retry_after=12.0)
        assert rec.sleeps == [12.0]


class TestBackoff:
    def test_is_capped(self) -> None:
        """Waits never exceed the cap, however many attempts."""
        backoff = Backoff(base=1, cap=10, rng=random.Random(0))
        assert all(backoff.delay(n) <= 10 for n in range(1, 50))

    def test_retryable_by_type(self) -> None:
        assert is_retryable(_transient())
        assert not is_retryable(PermanentProviderError(message="x"))
        assert not is_retryable(ValueError())


class TestAttempts:
    @pytest.mark.anyio
    async def test_same_policy_as_retry_policy(self) -> None:
        """503 then success: one wait, the second attempt's result; out of attempts: the last error."""
        rec = Recorder()
        calls = 0
        async for attempt in attempts(3, sleep=rec.sleep):
            with attempt:
                calls += 1
                if calls == 1:
                    raise _transient()
        assert (calls, len(rec.sleeps)) == (2, 1)
        with pytest.raises(TransientProviderError):
            async for attempt in attempts(2, sleep=rec.sleep):
                with attempt:
                    raise _transient()

    @pytest.mark.anyio
    async def test_a_successful_row_leaves_nothing_for_the_cycle_collector(self) -> None:
        """Once its attempts end, a policy is freed by reference counting: a run of many rows gives the
        garbage collector nothing to pause the event loop for."""
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(20):
                async for attempt in attempts(3):
                    with attempt:
                        pass
            gc.collect()
            left = [o for o in gc.garbage if isinstance(o, AsyncRetrying)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert left == []
