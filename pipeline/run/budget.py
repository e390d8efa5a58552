"""Money: the estimated cost of a request, and a budget that reserves before it spends.

    budget = Budget(limit=Decimal("25"), spent=state.spent_usd)
    if await budget.reserve(estimate):    # False: spent + reserved would pass the limit, even after
                                          # every reservation in flight has settled
        ...                               # dispatch
        budget.settle(estimate, actual)   # actual cost (None: the estimate stands in for it)

Amounts are exact ``Decimal``s.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import anyio

from pipeline.config.profiles import load_model_profile
from pipeline.rows import ImageRequest

__all__ = ["Budget", "estimate_usd"]


def estimate_usd(request: ImageRequest) -> Decimal:
    """List price of ``request`` from its model profile: price per image * numberResults."""
    return load_model_profile(request.model).estimate_usd(request)


class Budget:
    """Spent + reserved never passes ``limit`` (None = no limit)."""

    def __init__(self, limit: Decimal | None, spent: Decimal = Decimal(0)) -> None:
        self.limit = limit
        self.spent = spent
        self.reserved = Decimal(0)
        self._moved = anyio.Event()

    @property
    def committed(self) -> Decimal:
        return self.spent + self.reserved

    def fits(self, amount: Decimal) -> bool:
        return self.limit is None or self.committed + amount <= self.limit

    def try_reserve(self, amount: Decimal) -> bool:
        """Reserve ``amount`` if it fits under the limit."""
        if not self.fits(amount):
            return False
        self.reserved += amount
        return True

    async def reserve(self, amount: Decimal, *, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Reserve ``amount``; while it does not fit, wait for reservations in flight to settle.
        False when it cannot fit (nothing left in flight to free room) or ``give_up()`` says so."""
        while not self.try_reserve(amount):
            if self.reserved <= 0 or give_up():
                return False
            await self._moved.wait()
        return True

    def _notify(self) -> None:
        self._moved.set()
        self._moved = anyio.Event()

    def force_reserve(self, amount: Decimal) -> None:
        """Reserve for work already sent (a task in doubt), limit or not."""
        self.reserved += amount

    def settle(self, reserved: Decimal, cost: Decimal | None) -> None:
        """The reserved task was paid ``cost`` (the estimate when the provider sent none)."""
        self.reserved -= reserved
        self.spent += reserved if cost is None else cost
        self._notify()

    def release(self, reserved: Decimal) -> None:
        """The reserved task was not paid (failed, or never sent)."""
        self.reserved -= reserved
        self._notify()
