"""The one retry policy: which errors are retried, how long to wait, when to give up.

Transient errors (``pipeline.errors.TransientError``) are retried with exponential backoff and
(equal) jitter, never sooner than the provider's ``Retry-After``; anything else goes straight through::

    async for attempt in attempts(max_attempts=5):   # retry_policy(...), untangled when done
        with attempt:
            await send()

``sleep`` and ``rng`` are injectable so tests run instantly and deterministically.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
from tenacity import AsyncRetrying, AttemptManager, RetryCallState, retry_if_exception, stop_after_attempt

from pipeline.errors import TransientError

__all__ = ["Backoff", "attempts", "is_retryable", "retry_after_of", "retry_policy"]


def is_retryable(exc: BaseException) -> bool:
    """Retry decided by type: only transient errors."""
    return isinstance(exc, TransientError)


def retry_after_of(exc: BaseException | None) -> float:
    """The provider's ``Retry-After`` in seconds carried by ``exc`` (0 when none)."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, (int, float)) and value > 0 else 0.0


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter: d * uniform(0.5, 1), d = min(cap, base * 2**(n-1)).

    Never shorter than the error's ``Retry-After``.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random | None = None

    def delay(self, attempt_number: int, exc: BaseException | None = None) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** max(0, attempt_number - 1))
        rand = self.rng.random() if self.rng is not None else random.random()
        return max(retry_after_of(exc), ceiling * (0.5 + rand / 2))

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return self.delay(state.attempt_number, exc)


def retry_policy(
    max_attempts: int,
    *,
    backoff: Backoff | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    """The policy every retried operation uses; re-raises the last error when attempts run out."""
    return AsyncRetrying(
        stop=stop_after_attempt(max(1, max_attempts)),
        wait=backoff or Backoff(),
        retry=retry_if_exception(is_retryable),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


async def attempts(
    max_attempts: int,
    *,
    backoff: Backoff | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> AsyncIterator[AttemptManager]:
    """The attempts of ``retry_policy``, whose reference cycles are broken once they end.

    A tenacity policy points at its call state and its pending actions, which point back at it: every
    row of a run left some 30 objects that only the cycle collector frees, and at 128 rows a second its
    full collections paused the event loop for 40-100 ms a few times a minute (answers waited). Cut
    here, they are freed as soon as the row is done.
    """
    policy = retry_policy(max_attempts, backoff=backoff, sleep=sleep)
    try:
        async for attempt in policy:
            yield attempt
    finally:
        policy.iter_state.reset()
        policy.__dict__.pop("_retry_state", None)
