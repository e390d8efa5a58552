"""How a plan is shown: a rich renderable for people, a JSON object for scripts.

console.print(render_plan(plan))
emit_json(plan_json(plan))   # {"rows": {...}, "estimate_usd": 1.23, "warnings": [...], ...}
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pipeline.planner import Plan

__all__ = ["format_duration", "plan_json", "render_plan"]


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


def plan_json(plan: Plan) -> dict[str, Any]:
    """The ``--json`` summary (stdout holds this and nothing else)."""
    rows = plan.rows
    return {
        "job": plan.job,
        "manifest": str(plan.manifest),
        "ledger": str(plan.ledger) if plan.ledger else None,
        "rows": {
            "total": rows.total,
            "rejected": rows.rejected,
            "new": rows.new,
            "changed": rows.changed,
            "done": rows.done,
            "failed": rows.failed,
            "in_doubt": rows.in_doubt,
        },
        "images": plan.images,
        "estimate_usd": float(plan.estimate_usd),
        "spent_usd": float(plan.spent_usd),
        "estimate": [
            {
                "model": line.model,
                "quality": line.quality,
                "size": line.size,
                "rows": line.rows,
                "images": line.images,
                "usd": float(line.usd),
            }
            for line in plan.cost
        ],
        "time_estimate_s": round(plan.time_s, 1),
        "warnings": plan.warnings,
        "rejects": [{"row_number": r.row_number, "id": r.id, "reason": r.reason} for r in plan.rejects],
        "rejects_path": str(plan.rejects_path),
    }


def _rows_table(plan: Plan) -> Table:
    rows = plan.rows
    table = Table(title=f"Plan for job {plan.job}", title_justify="left", show_header=False, box=None)
    table.add_column("what")
    table.add_column("rows", justify="right")
    table.add_column("note", style="dim")
    table.add_row("rows", f"{rows.total:,}", str(plan.manifest))
    table.add_row("rejected", f"{rows.rejected:,}", "not sent" if rows.rejected else "")
    retry = [
        f"{n:,} {what}" for n, what in ((rows.failed, "failed before"), (rows.in_doubt, "in doubt")) if n
    ]
    table.add_row("new", f"{rows.new:,}", f"of which {', '.join(retry)}" if retry else "")
    table.add_row("changed", f"{rows.changed:,}", "edited since they were sent" if rows.changed else "")
    spent = f"; ${plan.spent_usd:,.4f} spent so far" if plan.spent_usd else ""
    ledger = f"from {plan.ledger}{spent}" if plan.ledger else "no ledger yet: nothing done"
    table.add_row("done", f"{rows.done:,}", ledger)
    return table


def _cost_table(plan: Plan) -> Table:
    table = Table(title="Estimated cost (list prices)", title_justify="left")
    for name, justify in (("model", "left"), ("quality", "left"), ("size", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name in ("rows", "images", "USD"):
        table.add_column(name, justify="right")
    for line in plan.cost:
        table.add_row(
            line.model, line.quality, line.size, f"{line.rows:,}", f"{line.images:,}", _usd(line.usd)
        )
    table.add_row(
        "total",
        "",
        "",
        f"{plan.rows.new + plan.rows.changed:,}",
        f"{plan.images:,}",
        _usd(plan.estimate_usd),
        style="bold",
    )
    return table


def render_plan(plan: Plan) -> RenderableType:
    """Counts, cost by model/quality/size, time, warnings, and the first rejects."""
    parts: list[RenderableType] = [_rows_table(plan), Text(""), _cost_table(plan)]
    parts.append(
        Text(f"Estimated time: {format_duration(plan.time_s)} at {plan.concurrency} requests in flight")
    )
    for warning in plan.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    if plan.rows.rejected:
        shown = len(plan.rejects)
        which = "all" if shown == plan.rows.rejected else f"first {shown} of" if shown else "none shown of"
        where = f"{which} {plan.rows.rejected:,}; the full list is in {plan.rejects_path}"
        parts.append(Text(f"\nRejected rows ({where})" + (":" if shown else "")))
        for reject in plan.rejects:
            parts.append(Text(f"  row {reject.row_number}  id {reject.id}: {reject.reason}"))
    return Group(*parts)
