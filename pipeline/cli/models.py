"""`pipeline models`: the model catalog, with each model's status today, sizes, prices and replacement.

pipeline models                     # a table: live models first, retired ones flagged
pipeline models --status retired    # only the retired ones (live / retiring / retired)
pipeline models --json              # {"models": [{"id", "name", "status", "shutdown_date", ...}]}

Status is relative to today's UTC date: ``live`` (no shutdown date), ``retiring`` (a shutdown date ahead),
``retired`` (on or past it). Prices are list prices, or a conservative estimate for token-billed models.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.cli._output import emit_json, out_console
from pipeline.config.profiles import LifecycleStatus, ModelProfile, PriceSpec, model_profiles
from pipeline.errors import ExitCode

__all__ = ["catalog", "model_json", "models_table", "price_text", "register", "status_text", "today"]

_STATUS_ORDER: dict[str, int] = {"live": 0, "retiring": 1, "retired": 2}
_STATUS_STYLE = {"live": "green", "retiring": "yellow", "retired": "bold red"}


def register(parser: argparse.ArgumentParser) -> None:
    """The arguments of `models`."""
    parser.add_argument(
        "--status", choices=tuple(_STATUS_ORDER), help="list only the models with this status today"
    )
    parser.set_defaults(func=_handle)


def today() -> dt.date:
    """Today's UTC date (tests replace it)."""
    return dt.datetime.now(dt.UTC).date()


# -- formatting (pure) ---------------------------------------------------------------------------------


def _usd(amount: Decimal) -> str:
    """``$0.03``, ``$0.10``, ``$0.00028``: the figure as the profile states it, at least to the cent."""
    text = format(amount.normalize(), "f")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def status_text(profile: ModelProfile, on: dt.date) -> str:
    """``live``, ``retiring on 2026-12-01 (in 8 days)`` or ``retired on 2026-12-01``."""
    lifecycle = profile.lifecycle
    status = lifecycle.status(on)
    if status == "live":
        return "live"
    if status == "retired":
        return f"retired on {lifecycle.shutdown}"
    days = lifecycle.days_left(on)
    return f"retiring on {lifecycle.shutdown} (in {days} day{'' if days == 1 else 's'})"


def _table_text(price: PriceSpec) -> str:
    flat = {key: entry for key, entry in price.table.items() if isinstance(entry, Decimal)}
    if len(flat) == len(price.table):
        return ", ".join(f"{key} {_usd(usd)}" for key, usd in flat.items()) + " per image"
    spans = [(key, usd) for key, entry in price.table.items() for usd in _figures(entry)]
    low, high = min(spans, key=lambda span: span[1]), max(spans, key=lambda span: span[1])
    return f"{low[0]} {_usd(low[1])} .. {high[0]} {_usd(high[1])} per image"


def _figures(entry: Decimal | dict[str, Decimal]) -> list[Decimal]:
    return [entry] if isinstance(entry, Decimal) else list(entry.values())


def _token_text(profile: ModelProfile) -> str:
    price = profile.price
    figures = {key: usd for key, entry in price.table.items() for usd in _figures(entry)}
    option = profile.options.get(price.by or "")
    shown = None if option is None or option.default is None else str(option.default)
    low, high = min(figures, key=figures.__getitem__), max(figures, key=figures.__getitem__)
    span = f"{low} {_usd(figures[low])} .. {high} {_usd(figures[high])}"
    if shown in figures:
        return f"token-billed, est. {shown} {_usd(figures[shown])} per 1 MP ({span})"
    return f"token-billed, est. {span} per 1 MP"


def price_text(profile: ModelProfile) -> str:
    """The price in a few words: ``$0.03 per image``, ``1K $0.138, 4K $0.244 per image``, ..."""
    price = profile.price
    if price.kind == "flat":
        assert price.usd is not None  # checked when the profile loads
        text = f"{_usd(price.usd)} per image"
    elif price.kind == "table":
        text = _table_text(price)
    elif price.kind == "tier":
        text = ", ".join(f"{tier} {_usd(usd)}" for tier, usd in price.tiers.items()) + " per image"
    elif price.kind == "per_megapixel":
        assert price.first_mp is not None and price.extra_mp is not None
        text = (
            f"{_usd(price.first_mp)} per MP"
            if price.first_mp == price.extra_mp
            else f"{_usd(price.first_mp)} first MP + {_usd(price.extra_mp)} per extra MP"
        )
    else:
        text = _token_text(profile)
    if price.per_input_image:
        text += f" + {_usd(price.per_input_image)} per reference"
    return text


def model_json(profile: ModelProfile, on: dt.date) -> dict[str, Any]:
    """One model as ``pipeline models --json`` lists it."""
    lifecycle = profile.lifecycle
    return {
        "id": profile.id,
        "name": profile.name,
        "status": lifecycle.status(on),
        "shutdown_date": None if lifecycle.shutdown is None else lifecycle.shutdown.isoformat(),
        "release_date": None if lifecycle.release is None else lifecycle.release.isoformat(),
        "replacement": lifecycle.replacement,
        "sizes": profile.sizes.describe(),
        "default_size": profile.sizes.default,
        "prices": price_text(profile),
        "price_kind": profile.price.kind,
        "options": list(profile.options),
        "max_reference_images": profile.max_reference_images,
        "max_number_results": profile.max_number_results,
        "job_default": profile.job_default,
    }


def catalog(on: dt.date, status: LifecycleStatus | None = None) -> list[ModelProfile]:
    """The catalog in the order a user reads it: live, then retiring, then retired; by id within."""
    profiles = [p for p in model_profiles().values() if status in (None, p.lifecycle.status(on))]
    return sorted(profiles, key=lambda p: (_STATUS_ORDER[p.lifecycle.status(on)], p.id))


def models_table(profiles: list[ModelProfile], on: dt.date) -> Table:
    """The human listing; every cell is plain text (ids and names are never rich markup)."""
    table = Table(title=f"Models on {on} (UTC)", title_justify="left", header_style="bold")
    table.add_column("model", no_wrap=True)
    table.add_column("name")
    table.add_column("status")
    table.add_column("sizes", overflow="fold")
    table.add_column("price", overflow="fold")
    table.add_column("replacement", no_wrap=True)
    for profile in profiles:
        status = profile.lifecycle.status(on)
        table.add_row(
            Text(profile.id + (" (default)" if profile.job_default else "")),
            Text(profile.name),
            Text(status_text(profile, on), style=_STATUS_STYLE[status]),
            Text(profile.sizes.describe()),
            Text(price_text(profile)),
            Text(profile.lifecycle.replacement or ""),
            style="dim" if status == "retired" else None,
        )
    return table


# -- printing ------------------------------------------------------------------------------------------


def _handle(args: argparse.Namespace) -> int:
    on = today()
    profiles = catalog(on, args.status)
    if args.json:
        emit_json({"models": [model_json(profile, on) for profile in profiles]})
    elif not args.quiet:
        # A pipe or a file gets a wide table rather than one folded to 80 columns.
        console = out_console() if sys.stdout.isatty() else Console(width=200, color_system=None)
        console.print(models_table(profiles, on))
    return ExitCode.OK
