"""How a plan is shown: a rich renderable for people, a JSON object for scripts.

console.print(render_plan(plan))
emit_json(plan_json(plan))   # {"rows": {...}, "estimate_usd": 1.23, "warnings": [...], "models": [...], ...}
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pipeline.output.plan.build import Plan
from pipeline.output.plan.costs import CostLine, ModelLine

__all__ = ["format_duration", "lifecycle_text", "plan_json", "plan_notes", "render_plan"]


def format_duration(seconds: float) -> str:
    """``"~45 s"``, ``"~12 min"``, ``"~3.5 h"``, ``"~2.1 days"``."""
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"~{seconds / 3600:.1f} h"
    return f"~{seconds / 86400:.1f} days"


def _usd(value: Decimal) -> str:
    return f"${value:,.4f}"


def lifecycle_text(line: ModelLine) -> str:
    """``live``, ``retiring: shuts down on 2026-12-01, in 8 days`` or ``retired on 2026-12-01``."""
    if line.status == "live":
        return "live"
    if line.status == "retired":
        return f"retired on {line.shutdown_date}"
    days = line.days_left or 0
    return f"retiring: shuts down on {line.shutdown_date}, in {days} day{'s' if days != 1 else ''}"


def plan_notes(plan: Plan) -> list[str]:
    """What a user can do about the plan: switch a retiring model, count earlier models' rows as done."""
    notes = []
    for line in plan.models:
        if line.status != "live" and line.replacement and line.rows:
            notes.append(
                f'to switch {line.id} to {line.replacement}: set model = "{line.replacement}" under '
                "[defaults] in the job spec (or in the manifest's model column); rows it already "
                "generated count as done with keep_earlier_models = true under [resume]"
            )
    earlier = plan.earlier_model
    if earlier.rows and earlier.counted_done:
        notes.append(
            f"{earlier.rows:,} rows count as done: an earlier model generated them (same id, "
            f"prompt and reference images; keep_earlier_models = true), saving {_usd(earlier.usd)}"
        )
    elif earlier.rows:
        notes.append(
            f"{earlier.rows:,} changed rows were generated before by an earlier model (same id, prompt "
            "and reference images): keep_earlier_models = true under [resume] in the job spec counts "
            f"them as done and saves {_usd(earlier.usd)}"
        )
    return notes


def _cost_json(line: CostLine) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": line.model, "quality": line.quality, "size": line.size}
    if line.variant:
        entry["variant"] = line.variant
    return {**entry, "rows": line.rows, "images": line.images, "usd": float(line.usd)}


def _model_json(line: ModelLine) -> dict[str, Any]:
    replacement = line.replacement_estimate_usd
    return {
        "id": line.id,
        "name": line.name,
        "status": line.status,
        "shutdown_date": line.shutdown_date.isoformat() if line.shutdown_date else None,
        "replacement": line.replacement,
        "rows": line.rows,
        "estimate_usd": float(line.estimate_usd),
        "replacement_estimate_usd": None if replacement is None else float(replacement),
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    """The ``--json`` summary (stdout holds this and nothing else)."""
    rows = plan.rows
    return {
        "job": plan.job,
        "manifest": str(plan.manifest),
        "state": str(plan.state) if plan.state else None,
        "rows": {
            "total": rows.total,
            "rejected": rows.rejected,
            "new": rows.new,
            "changed": rows.changed,
            "done": rows.done,
            "failed": rows.failed,
            "in_doubt": rows.in_doubt,
            "done_earlier_model": rows.done_earlier_model,
        },
        "images": plan.images,
        "estimate_usd": float(plan.estimate_usd),
        "spent_usd": float(plan.spent_usd),
        "estimate": [_cost_json(line) for line in plan.cost],
        "time_estimate_s": round(plan.time_s, 1),
        "models": [_model_json(line) for line in plan.models],
        "changed_fields": plan.changes.fields,
        "model_changes": [{"from": a, "to": b, "rows": n} for a, b, n in plan.changes.models],
        "earlier_model": {
            "rows": plan.earlier_model.rows,
            "usd": float(plan.earlier_model.usd),
            "counted_done": plan.earlier_model.counted_done,
        },
        "warnings": plan.warnings,
        "notes": plan_notes(plan),
        "rejects": [{"row_number": r.row_number, "id": r.id, "reason": r.reason} for r in plan.rejects],
        "rejects_path": str(plan.rejects_path),
    }


def _add_row(table: Table, *cells: RenderableType, style: str | None = None) -> None:
    """A table row whose text is shown verbatim: paths, ids and model names such as ``FLUX.2 [pro]``
    are user or catalog data, never rich markup."""
    table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in cells), style=style)


def _rows_table(plan: Plan) -> Table:
    rows = plan.rows
    table = Table(title=f"Plan for job {plan.job}", title_justify="left", show_header=False, box=None)
    table.add_column("what")
    table.add_column("rows", justify="right")
    table.add_column("note", style="dim")
    _add_row(table, "rows", f"{rows.total:,}", str(plan.manifest))
    _add_row(table, "rejected", f"{rows.rejected:,}", "not sent" if rows.rejected else "")
    retry = [
        f"{n:,} {what}" for n, what in ((rows.failed, "failed before"), (rows.in_doubt, "in doubt")) if n
    ]
    _add_row(table, "new", f"{rows.new:,}", f"of which {', '.join(retry)}" if retry else "")
    _add_row(table, "changed", f"{rows.changed:,}", _changed_note(plan))
    spent = f"; ${plan.spent_usd:,.4f} spent so far" if plan.spent_usd else ""
    source = f"from {plan.state}{spent}" if plan.state else "no state yet: nothing done"
    if rows.done_earlier_model:
        source = f"of which {rows.done_earlier_model:,} generated by an earlier model; {source}"
    _add_row(table, "done", f"{rows.done:,}", source)
    return table


def _changed_note(plan: Plan) -> str:
    """``model 1,000 (openai:1@2 -> openai:gpt-image@2), prompt 12``: what differs from what was sent."""
    if not plan.rows.changed:
        return ""
    if not plan.changes.fields:
        return "edited since they were sent"
    parts = []
    for name, count in plan.changes.fields.items():
        text = f"{name} {count:,}"
        if name == "model" and plan.changes.models:
            old, new, _ = plan.changes.models[0]
            more = f", +{len(plan.changes.models) - 1} more" if len(plan.changes.models) > 1 else ""
            text += f" ({old} -> {new}{more})"
        parts.append(text)
    return ", ".join(parts)


def _cost_table(plan: Plan) -> Table:
    table = Table(title="Estimated cost (list prices)", title_justify="left")
    variants = any(line.variant for line in plan.cost)
    table.add_column("model", overflow="fold")  # an id cut to "openai:gpt-i…" names no model
    for name in ("quality", "size", *(("variant",) if variants else ())):
        table.add_column(name)
    for name in ("rows", "images", "USD"):
        table.add_column(name, justify="right")
    for line in plan.cost:
        _add_row(
            table,
            line.model,
            line.quality or "-",
            line.size,
            *((line.variant,) if variants else ()),
            f"{line.rows:,}",
            f"{line.images:,}",
            _usd(line.usd),
        )
    _add_row(
        table,
        "total",
        "",
        "",
        *(("",) if variants else ()),
        f"{plan.rows.new + plan.rows.changed:,}",
        f"{plan.images:,}",
        _usd(plan.estimate_usd),
        style="bold",
    )
    return table


def _status_text(line: ModelLine) -> Text:
    if line.status == "retired":
        return Text(f"RETIRED on {line.shutdown_date}", style="bold red")
    return Text(lifecycle_text(line), style="yellow" if line.status == "retiring" else "")


def _models_table(plan: Plan) -> Table:
    """Each model in use, its lifecycle, and (for a retiring one) its rows priced on its replacement."""
    replacing = any(line.replacement_estimate_usd is not None for line in plan.models)
    table = Table(title="Models", title_justify="left")
    table.add_column("model", overflow="fold")
    for name in ("name", "lifecycle"):
        table.add_column(name)
    for name in ("rows to send", "USD"):
        table.add_column(name, justify="right")
    if replacing:
        table.add_column("on its replacement", justify="right", overflow="fold")
    for line in plan.models:
        cells: list[RenderableType] = [
            line.id, line.name, _status_text(line), f"{line.rows:,}", _usd(line.estimate_usd)
        ]  # fmt: skip
        if replacing:
            usd = line.replacement_estimate_usd
            cells.append("" if usd is None else f"{_usd(usd)} on {line.replacement}")
        _add_row(table, *cells)
    return table


def render_plan(plan: Plan) -> RenderableType:
    """Counts, cost by model/quality/size, models and their lifecycle, time, warnings, notes, rejects."""
    parts: list[RenderableType] = [_rows_table(plan), Text(""), _cost_table(plan)]
    parts.append(
        Text(f"Estimated time: {format_duration(plan.time_s)} at {plan.concurrency} requests in flight")
    )
    if plan.models:
        parts += [Text(""), _models_table(plan)]
    for warning in plan.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    for note in plan_notes(plan):
        parts.append(Text(f"note: {note}"))
    if plan.rows.rejected:
        shown = len(plan.rejects)
        which = "all" if shown == plan.rows.rejected else f"first {shown} of" if shown else "none shown of"
        where = f"{which} {plan.rows.rejected:,}; the full list is in {plan.rejects_path}"
        parts.append(Text(f"\nRejected rows ({where})" + (":" if shown else "")))
        for reject in plan.rejects:
            parts.append(Text(f"  row {reject.row_number}  id {reject.id}: {reject.reason}"))
    return Group(*parts)
