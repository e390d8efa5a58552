"""Cost reports: facts grouped and summed exactly, plus the series the HTML page charts.

    sources = resolve_sources(["jobs/demo.toml", "output/*/results.parquet"])
    facts = load_facts(sources, by=["day", "category"])
    report = summarize(facts)            # report.groups, report.total, report.notes

Money is summed as integer nano-dollars and handed out as ``Decimal``: never float drift. ``spend`` is
everything the provider charged (the results rows plus the ledger's charges the table does not keep);
``wasted`` is the part that bought nothing kept (duplicate successes, charged failures).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

import polars as pl

from pipeline.errors import UsageError
from pipeline.output.report.facts import DERIVED_KEYS, Facts, Source, load_facts, parse_when, resolve_sources
from pipeline.output.report.ledger import usd

__all__ = [
    "DERIVED_KEYS",
    "Facts",
    "Group",
    "Report",
    "Source",
    "Stats",
    "gallery",
    "key_expr",
    "load_facts",
    "parse_when",
    "resolve_sources",
    "spend_over_time",
    "summarize",
    "usd",
]

# -- how much -------------------------------------------------------------------------------------------


def key_expr(key: str, columns: frozenset[str]) -> pl.Expr:
    """A grouping key: a results column by that name if there is one, else a derived key."""
    if key in columns:
        return pl.col(key)
    at = pl.col("completed_at")
    derived = {
        "day": at.dt.strftime("%Y-%m-%d"),
        "week": at.dt.strftime("%G-W%V"),
        "month": at.dt.strftime("%Y-%m"),
        "run": pl.col("run_id"),
        "size": pl.format("{}x{}", pl.col("width"), pl.col("height")),
    }
    return derived[key].alias(key)


_ROW = ("source", "id", "fingerprint")
# Distinct rows are counted in passes over shares of at most this many facts (a pass holds a hash set of
# its rows: ~150 MB a million), in at most _MOST_PASSES passes (each reads the tables again).
_PASS_FACTS: Final = 500_000
_MOST_PASSES: Final = 8


def _distinct_rows() -> list[pl.Expr]:
    kind, row = pl.col("kind"), pl.struct(*_ROW)
    return [
        row.filter(kind == "image").n_unique().alias("rows_succeeded"),
        row.filter(kind == "failed").n_unique().alias("rows_failed"),
    ]


def _aggregations(*, distinct: bool = True) -> list[pl.Expr]:
    kind, cost = pl.col("kind"), pl.col("cost_nano")
    image = kind == "image"
    return [
        image.sum().alias("images"),
        *(_distinct_rows() if distinct else ()),
        (kind == "rejected").sum().alias("rows_rejected"),
        cost.sum().alias("spend"),
        cost.filter(kind.is_in(["failed", "waste"])).sum().alias("wasted"),
        cost.filter(image).sum().alias("actual"),
        pl.col("estimate_nano").filter(image).sum().alias("estimate"),
        cost.filter(kind == "unlisted").sum().alias("unlisted"),
        (image & (pl.col("cost_source") == "estimate")).sum().alias("estimated_images"),
    ]


@dataclass(frozen=True)
class Stats:
    """The figures of one group (or of the total). Money is exact ``Decimal`` USD."""

    images: int = 0
    rows_succeeded: int = 0
    rows_failed: int = 0
    rows_rejected: int = 0
    spend: Decimal = Decimal(0)
    wasted: Decimal = Decimal(0)
    actual: Decimal = Decimal(0)
    estimate: Decimal = Decimal(0)
    unlisted: Decimal = Decimal(0)
    estimated_images: int = 0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Stats:
        counts = {k: int(row[k] or 0) for k in ("images", "rows_succeeded", "rows_failed", "rows_rejected")}
        return cls(
            **counts,
            spend=usd(row["spend"]),
            wasted=usd(row["wasted"]),
            actual=usd(row["actual"]),
            estimate=usd(row["estimate"]),
            unlisted=usd(row["unlisted"]),
            estimated_images=int(row["estimated_images"] or 0),
        )

    @property
    def avg_cost_per_image(self) -> Decimal | None:
        """Spend (waste included) per image kept; None without images."""
        return (self.spend / self.images).quantize(Decimal("1e-9")) if self.images else None

    def as_dict(self) -> dict[str, Any]:
        """Counts as ints and money as exact Decimals, under the JSON names."""
        return {
            "images": self.images,
            "rows_succeeded": self.rows_succeeded,
            "rows_failed": self.rows_failed,
            "rows_rejected": self.rows_rejected,
            "spend_usd": self.spend,
            "avg_cost_per_image_usd": self.avg_cost_per_image,
            "wasted_usd": self.wasted,
            "estimate_usd": self.estimate,
            "actual_usd": self.actual,
            "estimate_delta_usd": self.actual - self.estimate,
            "estimated_cost_images": self.estimated_images,
            "unlisted_usd": self.unlisted,
        }


@dataclass(frozen=True)
class Group:
    keys: dict[str, Any]
    stats: Stats


@dataclass(frozen=True)
class Report:
    """What ``pipeline report`` prints: one line per group, and the total."""

    by: tuple[str, ...]
    groups: list[Group]
    total: Stats
    notes: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default=())


def _collect(lazy: pl.LazyFrame, engine: Literal["auto", "streaming"] = "auto") -> pl.DataFrame:
    try:
        return lazy.collect(engine=engine)
    except pl.exceptions.PolarsError as exc:
        raise UsageError(f"cannot compute the report: {exc}") from exc


def summarize(facts: Facts) -> Report:
    """Group the facts by ``facts.by`` and sum them; the total is computed over all facts, not the groups."""
    passes = min(_MOST_PASSES, -(-int(_collect(facts.frame.select(pl.len())).item()) // _PASS_FACTS))
    aggregations = _aggregations(distinct=passes <= 1)
    total_row = _collect(facts.frame.select(aggregations)).row(0, named=True)
    if passes > 1:
        total_row |= _counted_in_passes(facts.frame, [], passes).row(0, named=True)
    total = Stats.from_row(total_row)
    groups: list[Group] = []
    if facts.by:
        keys = [key_expr(k, facts.columns) for k in facts.by]
        table = _collect(facts.frame.group_by(keys).agg(aggregations))
        if passes > 1:
            counted = _counted_in_passes(facts.frame, keys, passes)
            table = table.join(counted, on=list(facts.by), how="left", nulls_equal=True)
        for row in table.sort(list(facts.by), nulls_last=True).iter_rows(named=True):
            groups.append(Group({k: row[k] for k in facts.by}, Stats.from_row(row)))
    else:
        groups.append(Group({}, total))
    notes = facts.notes
    if total.estimated_images:
        notes += (f"{total.estimated_images} image(s) came without a billed cost; their estimate is counted",)
    return Report(facts.by, groups, total, notes, tuple(str(s.results) for s in facts.sources))


def _counted_in_passes(frame: pl.LazyFrame, keys: list[pl.Expr], passes: int) -> pl.DataFrame:
    """The distinct rows (succeeded, failed) per group of ``keys`` (none: in all), counted in ``passes``
    passes over the facts, each over the rows whose hash falls in its share: a row is in one share only,
    so the counts add up exactly, and a pass holds a share of the rows in memory, not all of them."""
    share = pl.struct(*_ROW).hash() % passes
    counted = []
    for index in range(passes):
        part = frame.filter(share == index)
        query = part.group_by(keys).agg(_distinct_rows()) if keys else part.select(_distinct_rows())
        counted.append(_collect(query, "streaming"))  # streamed: the other shares' rows pass through
    both = pl.concat(counted)
    names = [name for name in both.columns if name not in ("rows_succeeded", "rows_failed")]
    sums = [pl.col("rows_succeeded").sum(), pl.col("rows_failed").sum()]
    return both.group_by(names).agg(sums) if names else both.select(sums)


def _bucket(span: dt.timedelta) -> tuple[str, str]:
    """A time bucket that splits ``span`` into a readable number of bars: (polars every, strftime)."""
    for every, fmt, limit in (("1s", "%H:%M:%S", 120), ("1m", "%H:%M", 180), ("1h", "%m-%d %H:00", 96)):
        if span <= dt.timedelta(seconds={"1s": 1, "1m": 60, "1h": 3600}[every] * limit):
            return every, fmt
    return ("1d", "%Y-%m-%d") if span <= dt.timedelta(days=120) else ("1mo", "%Y-%m")


def spend_over_time(facts: Facts) -> list[tuple[str, Decimal, Decimal]]:
    """(bucket label, spend, wasted) in time order, empty buckets included, sized for the span covered."""
    timed = facts.frame.filter(pl.col("completed_at").is_not_null() & (pl.col("kind") != "rejected"))
    span = _collect(timed.select(lo=pl.col("completed_at").min(), hi=pl.col("completed_at").max()))
    lo, hi = span.row(0)
    if lo is None:
        return []
    every, fmt = _bucket(hi - lo)
    cost = pl.col("cost_nano")
    buckets = timed.group_by(pl.col("completed_at").dt.truncate(every).alias("at")).agg(
        spend=cost.sum(), wasted=cost.filter(pl.col("kind").is_in(["failed", "waste"])).sum()
    )
    ends = pl.select(lo=pl.lit(lo).dt.truncate(every), hi=pl.lit(hi).dt.truncate(every)).row(0)
    axis = pl.LazyFrame({"at": pl.datetime_range(ends[0], ends[1], every, eager=True, time_zone="UTC")})
    filled = _collect(axis.join(buckets, on="at", how="left").sort("at"))
    return [(at.strftime(fmt), usd(s), usd(w)) for at, s, w in filled.iter_rows()]


def gallery(facts: Facts, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` images and failed rows (in completion order), and how many there are in all."""
    rows = facts.frame.filter(pl.col("kind").is_in(["image", "failed"]))
    count = int(_collect(rows.select(pl.len())).item())
    picked = _collect(rows.bottom_k(limit, by="completed_at").sort("completed_at", nulls_last=True))
    return picked.to_dicts(), count
