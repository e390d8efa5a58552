"""`pipeline plan`: what a run would do, and what it would cost, without sending a request.

    plan = build_plan(spec, today=dt.date(2026, 11, 23))   # reads manifest + ledger, writes rejects
    plan.rows.new, plan.estimate_usd, plan.warnings

Rows are classified against the ledger's row states with polars joins, batch by batch: ``done`` when
their (id, fingerprint) succeeded, ``changed`` when the id has history under another fingerprint, ``new``
otherwise (``failed`` and ``in_doubt`` count the new rows the ledger has seen fail or left in doubt).
Formatting lives in ``plan_format``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl

from pipeline.jobspec import JobSpec, Limits
from pipeline.ledger import LEDGER_NAME, load_state, read_row_states
from pipeline.manifest import Reject, open_manifest
from pipeline.profiles import load_model_profile
from pipeline.results import REJECTS_COLUMNS, REJECTS_NAME, write_frame

__all__ = [
    "CostLine",
    "Plan",
    "RowCounts",
    "build_plan",
    "classify",
    "cost_lines",
    "ledger_spend",
    "time_estimate_s",
]

_GROUP = ("model", "quality", "width", "height")
_SEND = ("new", "changed")
_GROUP_SCHEMA = pl.Schema(
    {
        "model": pl.String,
        "quality": pl.String,
        "width": pl.Int64,
        "height": pl.Int64,
        "rows": pl.UInt32,
        "images": pl.Int64,
    }
)
_REJECTS_SCHEMA = pl.Schema(REJECTS_COLUMNS)
_ACCEPTED = pl.Schema(
    {
        "_id": pl.String,
        "_fp": pl.String,
        "model": pl.String,
        "quality": pl.String,
        "width": pl.Int64,
        "height": pl.Int64,
        "number_results": pl.Int64,
    }
)


@dataclass
class RowCounts:
    total: int = 0
    rejected: int = 0
    new: int = 0
    changed: int = 0
    done: int = 0
    failed: int = 0  # of the new rows: failed for good before (a run retries them)
    in_doubt: int = 0  # of the new rows: left in doubt (a run reconciles them first)


@dataclass(frozen=True)
class CostLine:
    model: str
    quality: str
    size: str
    rows: int
    images: int
    usd: Decimal


@dataclass
class Plan:
    job: str
    manifest: Path
    ledger: Path | None
    rows: RowCounts
    cost: list[CostLine]
    time_s: float
    warnings: list[str]
    rejects: list[Reject]
    rejects_path: Path
    concurrency: int = 16
    spent_usd: Decimal = Decimal(0)  # what the ledger says this job has already cost

    @property
    def estimate_usd(self) -> Decimal:
        return sum((line.usd for line in self.cost), Decimal(0))

    @property
    def images(self) -> int:
        return sum(line.images for line in self.cost)


def classify(accepted: pl.DataFrame, states: pl.DataFrame) -> pl.DataFrame:
    """Adds ``status`` (new/changed/done) and ``state`` (the ledger's, for this id and fingerprint).

    Two hash joins however large the ledger: on (id, fingerprint) for the state, on id for history.
    """
    keyed = states.select(_id="id", _fp="fingerprint", state="state")
    seen = states.select(_id="id").unique().with_columns(_seen=pl.lit(True))
    joined = accepted.join(keyed, on=["_id", "_fp"], how="left").join(seen, on="_id", how="left")
    status = (
        pl.when(pl.col("state") == "succeeded")
        .then(pl.lit("done"))
        .when(pl.col("state").is_null() & pl.col("_seen").fill_null(False))
        .then(pl.lit("changed"))
        .otherwise(pl.lit("new"))
    )
    return joined.with_columns(status=status).drop("_seen")


def cost_lines(groups: pl.DataFrame) -> list[CostLine]:
    """Price each (model, quality, width, height) group of rows to send from its model profile."""
    lines = []
    for model, quality, width, height, rows, images in groups.sort(list(_GROUP)).iter_rows():
        price = load_model_profile(model).price_usd(quality, width, height)
        lines.append(CostLine(model, quality, f"{width}x{height}", rows, images, price * images))
    return lines


def time_estimate_s(groups: pl.DataFrame, limits: Limits) -> float:
    """Seconds to send the rows: concurrency over each model's typical latency, or the rate limits."""
    by_model = groups.group_by("model").agg(pl.col("rows").sum()).iter_rows()
    latency = {model: load_model_profile(model).typical_latency_s for model, rows in by_model if rows}
    busy = sum(float(rows) * latency[model] for model, rows in groups.select("model", "rows").iter_rows())
    requests = int(groups["rows"].sum()) if groups.height else 0
    images = int(groups["images"].sum()) if groups.height else 0
    # Never less than one request's latency: a window that is not full still waits for its answers.
    seconds: float = max(busy / limits.concurrency, max(latency.values(), default=0.0))
    if limits.requests_per_minute:
        seconds = max(seconds, requests * 60 / limits.requests_per_minute)
    if limits.images_per_minute:
        seconds = max(seconds, images * 60 / limits.images_per_minute)
    return seconds


def ledger_spend(path: Path) -> Decimal:
    """The job's spend so far: the provider's costs on the ledger's ``succeeded`` lines, summed exactly."""
    if not path.exists() or path.stat().st_size == 0:
        return Decimal(0)
    schema = {"event": pl.String, "cost_usd": pl.Float64}
    try:
        costs = pl.scan_ndjson(path, schema=schema).filter(pl.col("event") == "succeeded")
        # Costs are decimal numbers of at most a few places: rounding to 9 then Decimal is exact.
        total = costs.select(pl.col("cost_usd").round(9).cast(pl.Decimal(38, 9)).sum()).collect().item()
    except pl.exceptions.PolarsError:  # a torn last line: the ledger's own reader copes with it
        return load_state(path).spent_usd
    return Decimal(0) if total is None else Decimal(total).normalize()


def plan_warnings(
    spec: JobSpec, models: set[str], estimate: Decimal, today: dt.date, spent: Decimal = Decimal(0)
) -> list[str]:
    warnings = []
    for model in sorted(models):
        if (text := load_model_profile(model).lifecycle_warning(today)) is not None:
            warnings.append(text)
    budget = spec.limits.budget_usd
    if budget is not None and spent + estimate > Decimal(str(budget)):
        so_far = f" + ${spent:,.4f} already spent" if spent else ""
        warnings.append(
            f"the estimate (${estimate:,.4f}{so_far}) is over budget_usd (${budget:,.2f}): "
            "the run will stop at the budget with work left (exit 3)"
        )
    return warnings


class _Tally:
    """Folds validated manifest batches into compact accepted rows and rejects, then classifies once."""

    def __init__(self) -> None:
        self.total = 0
        self.accepted: list[pl.DataFrame] = []
        self.reject_frames: list[pl.DataFrame] = []

    def add(self, frame: pl.DataFrame) -> None:
        self.total += frame.height
        bad = frame.filter(pl.col("_reason").is_not_null())
        if bad.height:
            self.reject_frames.append(bad.select(row_number="_row", id="_id", reason="_reason"))
        good = frame.filter(pl.col("_reason").is_null())
        self.accepted.append(good.select(list(_ACCEPTED)).cast(_ACCEPTED))

    def rejects(self) -> pl.DataFrame:
        empty = pl.DataFrame(schema=_REJECTS_SCHEMA)
        return pl.concat([empty, *(f.cast(_REJECTS_SCHEMA) for f in self.reject_frames)])

    def finish(self, states: pl.DataFrame, rejected: int) -> tuple[RowCounts, pl.DataFrame, set[str]]:
        """Row counts, cost groups of the rows to send, and the models in use."""
        accepted = pl.concat([pl.DataFrame(schema=_ACCEPTED), *self.accepted], rechunk=False)
        self.accepted.clear()
        classified = classify(accepted, states)
        counts = RowCounts(total=self.total, rejected=rejected)
        for status, state, count in classified.group_by("status", "state").len().iter_rows():
            setattr(counts, status, getattr(counts, status) + count)
            if status == "new" and state in ("failed", "in_doubt"):
                setattr(counts, state, getattr(counts, state) + count)
        send = classified.filter(pl.col("status").is_in(_SEND))
        groups = send.group_by(_GROUP).agg(rows=pl.len(), images=pl.col("number_results").sum())
        return counts, groups.cast(_GROUP_SCHEMA), set(accepted["model"].unique().to_list())


def build_plan(spec: JobSpec, today: dt.date, *, batch_size: int = 50_000, shown_rejects: int = 10) -> Plan:
    """Validate the manifest, classify its rows against the ledger and estimate the run (no request)."""
    ledger = spec.out_dir / LEDGER_NAME
    tally = _Tally()
    with open_manifest(spec, batch_size) as manifest:
        states = read_row_states(ledger)
        for frame in manifest.frames(batch_size, fingerprint_ids=states["id"].unique()):
            tally.add(frame)
    rejects = tally.rejects()
    counts, groups, models = tally.finish(states, rejects.height)
    rejects_path = write_frame(
        rejects, spec.out_dir, REJECTS_NAME.removesuffix(".parquet"), spec.output.formats
    )
    cost = cost_lines(groups)
    estimate = sum((line.usd for line in cost), Decimal(0))
    spent = ledger_spend(ledger)
    return Plan(
        job=spec.name,
        manifest=spec.manifest,
        ledger=ledger if ledger.exists() else None,
        rows=counts,
        cost=cost,
        time_s=time_estimate_s(groups, spec.limits),
        warnings=plan_warnings(spec, models, estimate, today, spent),
        rejects=[Reject(*row) for row in rejects.head(shown_rejects).iter_rows()],
        rejects_path=rejects_path,
        concurrency=spec.limits.concurrency,
        spent_usd=spent,
    )
