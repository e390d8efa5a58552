"""The sandbox's billing ledger: every charged task and image, and the duplicate charges among them.

    billing.charge(task_uuid, prompt_key, images=1, cost=Decimal("0.011"))
    billing.summary()   # {"tasks": 1, "images": 1, "total_usd": 0.011, "duplicate_tasks": 0, ...}

Money is summed exactly (``Decimal``) and reported as a JSON number.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["Billing", "Charge"]


@dataclass(frozen=True, slots=True)
class Charge:
    """One completed task's charge: its images and what they cost together."""

    task_uuid: str
    images: int
    cost_usd: Decimal
    image_uuids: tuple[str, ...] = ()
    image_costs: tuple[Decimal, ...] = ()  # each image's cost when they differ (token-billed models)

    def as_json(self) -> dict[str, Any]:
        even = self.cost_usd / self.images if self.images else Decimal(0)
        costs = self.image_costs or (even,) * len(self.image_uuids)
        return {
            "task_uuid": self.task_uuid,
            "cost_usd": float(self.cost_usd),
            "images": [
                {"image_uuid": image, "cost_usd": float(cost)}
                for image, cost in zip(self.image_uuids, costs, strict=True)
            ],
        }


@dataclass
class Billing:
    """Charges so far, and the credit left when a balance is set (``None``: unlimited)."""

    balance_usd: Decimal | None = None
    charges: list[Charge] = field(default_factory=list)
    total_usd: Decimal = Decimal(0)
    images: int = 0
    _by_task: Counter[str] = field(default_factory=Counter)
    _by_prompt: Counter[tuple[object, ...]] = field(default_factory=Counter)

    def charge(
        self,
        task_uuid: str,
        prompt_key: tuple[object, ...],
        images: int,
        cost: Decimal,
        image_uuids: tuple[str, ...] = (),
        image_costs: tuple[Decimal, ...] = (),
    ) -> None:
        """Record one completed task's charge."""
        self.charges.append(Charge(task_uuid, images, cost, image_uuids, image_costs))
        self.total_usd += cost
        self.images += images
        self._by_task[task_uuid] += 1
        self._by_prompt[prompt_key] += 1

    def can_afford(self, cost: Decimal, reserved: Decimal) -> bool:
        """Whether ``cost`` more fits in the balance, after what is spent and what is reserved."""
        return self.balance_usd is None or self.total_usd + reserved + cost <= self.balance_usd

    def top_up(self, usd: Decimal) -> None:
        """Add credit (an unlimited balance stays unlimited)."""
        if self.balance_usd is not None:
            self.balance_usd += usd

    def remaining_usd(self) -> Decimal | None:
        return None if self.balance_usd is None else self.balance_usd - self.total_usd

    def duplicate_tasks(self) -> list[str]:
        return [task for task, count in self._by_task.items() if count > 1]

    def summary(self) -> dict[str, Any]:
        """``GET /sandbox/billing``: totals and duplicate charges (extra charges beyond the first)."""
        duplicate_prompts = [
            {"model": key[0], "prompt": key[1], "charges": count}
            for key, count in self._by_prompt.items()
            if count > 1
        ]
        remaining = self.remaining_usd()
        return {
            "tasks": len(self.charges),
            "images": self.images,
            "total_usd": float(self.total_usd),
            "total_usd_exact": str(self.total_usd),
            "duplicate_tasks": sum(count - 1 for count in self._by_task.values() if count > 1),
            "duplicate_prompts": sum(count - 1 for count in self._by_prompt.values() if count > 1),
            "duplicate_task_uuids": self.duplicate_tasks()[:100],
            "duplicate_prompt_list": duplicate_prompts[:100],
            "balance_usd": None if remaining is None else float(remaining),
        }
