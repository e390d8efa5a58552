"""What the rows a plan would send cost, on their model and, for a retiring one, on its replacement.

    groups = price_groups(send)                  # one row per distinct priced request: rows, images
    groups = merge_groups([groups, price_groups(more)])   # the same, batch by batch
    lines = cost_lines(groups)                   # CostLine per model / quality / size / variant
    models = model_lines(groups, accepted_models, today)   # lifecycle, and the replacement's estimate

Every figure comes from ``ModelProfile.image_price`` (the one pricing rule): rows are grouped by every
column a price can depend on (model, size, quality, background, resolution, the profiles' price ``by``
options, number of references), and each group is priced as one ``ImageRequest``. A million rows are a
few dozen groups, so the Python here never runs per row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cache
from typing import cast

import polars as pl

from pipeline.config.jobspec import option_text
from pipeline.config.profiles import (
    LifecycleStatus,
    ModelProfile,
    load_model_profile,
    model_profiles,
    parse_size,
)
from pipeline.rows import LEGACY_OPTIONS, ImageRequest

__all__ = [
    "CostLine",
    "ModelLine",
    "cost_lines",
    "merge_groups",
    "model_lines",
    "on_replacement",
    "price_columns",
    "price_groups",
    "total_usd",
]

_BASE = ("model", "width", "height", "quality", "background", "_nrefs")
_COUNTS = pl.Schema({"rows": pl.UInt32, "images": pl.Int64})


@dataclass(frozen=True)
class CostLine:
    model: str
    quality: str
    size: str  # "WxH", the resolution tier, or "default" (the model's own size)
    rows: int
    images: int
    usd: Decimal
    variant: str = ""  # the price option besides quality, when the model's price depends on one


@dataclass(frozen=True)
class ModelLine:
    """One model a job uses: its lifecycle and what its rows to send cost, here and on its replacement."""

    id: str
    name: str
    status: LifecycleStatus
    shutdown_date: dt.date | None
    days_left: int | None
    replacement: str | None
    rows: int  # rows to send
    estimate_usd: Decimal
    replacement_estimate_usd: Decimal | None  # retired or retiring with rows to send; None otherwise


@cache
def _price_options() -> tuple[str, ...]:
    """Options a price can depend on besides quality and background: resolution and any price ``by``."""
    named = {"resolution"} | {p.price.by for p in model_profiles().values() if p.price.by}
    return tuple(sorted(named - set(LEGACY_OPTIONS)))


def price_columns(columns: Iterable[str]) -> list[str]:
    """The columns of a frame of rows that ``price_groups`` groups by."""
    present = set(columns)
    return [*_BASE, *(name for name in _price_options() if name in present)]


def price_groups(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` (one per request: the request columns and ``_nrefs``) grouped by price: + rows, images."""
    keys = price_columns(rows.columns)
    groups = rows.group_by(keys).agg(rows=pl.len(), images=pl.col("number_results").sum())
    return _sorted(groups, keys)


def merge_groups(groups: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """``price_groups`` of all the rows behind several ``price_groups`` frames (of rows with the same
    columns): a batch's rows can be grouped, and dropped, as soon as they are read."""
    frame = pl.concat(groups)
    keys = [name for name in frame.columns if name not in _COUNTS]
    summed = frame.group_by(keys).agg(pl.col("rows").sum(), pl.col("images").sum())
    return _sorted(summed, keys)


def _sorted(groups: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    counts = groups.with_columns(pl.col(name).cast(dtype) for name, dtype in _COUNTS.items())
    return counts.sort(keys, nulls_last=True)


def group_request(group: Mapping[str, object]) -> ImageRequest:
    """The request a price group stands for (a placeholder prompt; one placeholder per reference)."""
    options = tuple(
        (name, cast(str, group[name])) for name in _price_options() if group.get(name) is not None
    )
    return ImageRequest(
        model=cast(str, group["model"]),
        prompt="",
        width=cast("int | None", group["width"]),
        height=cast("int | None", group["height"]),
        quality=cast("str | None", group["quality"]) or "",
        background=cast("str | None", group["background"]) or "",
        output_format="JPG",
        number_results=1,
        reference_images=("",) * cast(int, group["_nrefs"] or 0),
        options=options,
    )


def _line_key(request: ImageRequest, profile: ModelProfile) -> tuple[str, str, str, str]:
    size = request.size or "default"
    by = profile.price.by
    value = request.option(by) if by and by not in LEGACY_OPTIONS else None
    return request.model, request.quality, size, f"{by} {value}" if value else ""


def cost_lines(groups: pl.DataFrame) -> list[CostLine]:
    """Each price group priced from its model profile, summed per model / quality / size / variant."""
    totals: dict[tuple[str, str, str, str], tuple[int, int, Decimal]] = {}
    for group in groups.iter_rows(named=True):
        request = group_request(group)
        profile = load_model_profile(request.model)
        usd = profile.image_price(request) * group["images"]
        key = _line_key(request, profile)
        rows, images, total = totals.get(key, (0, 0, Decimal(0)))
        totals[key] = (rows + group["rows"], images + group["images"], total + usd)
    return [
        CostLine(model, quality, size, rows, images, usd, variant)
        for (model, quality, size, variant), (rows, images, usd) in totals.items()
    ]


def total_usd(groups: pl.DataFrame) -> Decimal:
    return sum((line.usd for line in cost_lines(groups)), Decimal(0))


def _takes(target: ModelProfile, name: str, value: str) -> bool:
    spec = target.options.get(name)
    if spec is None:
        return False
    try:
        spec.parse(value)
    except ValueError:
        return False
    return True


def on_replacement(request: ImageRequest, target: ModelProfile) -> ImageRequest:
    """What ``request`` becomes on ``target``: the same size when the target allows it, else its
    default size; each option kept when the target takes that value, else the target's default (or none)."""
    options = {name: value for name, value in request.option_items() if _takes(target, name, value)}
    for name, spec in target.options.items():
        if name not in options and spec.default is not None:
            options[name] = spec.parse(option_text(spec.default))
    width, height = request.width, request.height
    keeps_tier = width is None and "resolution" in options
    if not keeps_tier and (width is None or height is None or not target.sizes.allows(width, height)):
        width, height = parse_size(target.sizes.default) if target.sizes.default else (None, None)
    quality, background = options.pop("quality", ""), options.pop("background", "")
    return replace(
        request,
        model=target.id,
        width=width,
        height=height,
        quality=quality,
        background=background,
        number_results=min(request.number_results, target.max_number_results),
        reference_images=request.reference_images[: target.references.max],
        options=tuple(sorted(options.items())),
    )


def _replacement_usd(groups: pl.DataFrame, target: ModelProfile) -> Decimal | None:
    """The groups' rows priced on ``target``; None when the target has no price for one of them."""
    total = Decimal(0)
    for group in groups.iter_rows(named=True):
        try:
            total += target.image_price(on_replacement(group_request(group), target)) * group["images"]
        except KeyError:
            return None
    return total


def model_lines(groups: pl.DataFrame, models: Iterable[str], today: dt.date) -> list[ModelLine]:
    """A line per model of ``models`` (the accepted rows'), from the price groups of the rows to send."""
    return [_model_line(load_model_profile(model), groups, today) for model in sorted(models)]


def _model_line(profile: ModelProfile, groups: pl.DataFrame, today: dt.date) -> ModelLine:
    mine = groups.filter(pl.col("model") == profile.id)
    rows = int(mine["rows"].sum()) if mine.height else 0
    life = profile.lifecycle
    status = life.status(today)
    replacement_usd = None
    if status != "live" and life.replacement is not None and rows:
        replacement_usd = _replacement_usd(mine, load_model_profile(life.replacement))
    return ModelLine(
        id=profile.id,
        name=profile.name,
        status=status,
        shutdown_date=life.shutdown,
        days_left=life.days_left(today),
        replacement=life.replacement,
        rows=rows,
        estimate_usd=total_usd(mine),
        replacement_estimate_usd=replacement_usd,
    )
