"""A ``Report`` as text: a rich table, CSV, JSON or Markdown.

    print(to_csv(report))          # one line per group, then a "(total)" line
    payload = to_json(report)      # {"by": [...], "groups": [...], "total": {...}, "notes": [...]}

Money in JSON is a number rounded to 6 decimals from the exact sum; in CSV a fixed 6-decimal string.
CSV text cells that a spreadsheet would run as a formula (= + - @ tab CR) get a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

from pipeline.output.report.build import Report, Stats
from pipeline.output.report.keys import FORMATS

__all__ = ["FORMATS", "money6", "safe_csv_text", "show_usd", "to_csv", "to_json", "to_markdown", "to_table"]

_MICRO = Decimal("0.000001")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TOTAL_LABEL = "(total)"
# (field of Stats.as_dict(), column heading) for the human formats
_SHOWN = (
    ("rows_succeeded", "succeeded"),
    ("rows_failed", "failed"),
    ("rows_rejected", "rejected"),
    ("images", "images"),
    ("spend_usd", "spend"),
    ("avg_cost_per_image_usd", "per image"),
    ("wasted_usd", "wasted"),
    ("estimate_usd", "estimate"),
    ("estimate_delta_usd", "actual - est."),
)


def money6(value: Decimal) -> Decimal:
    """Rounded to the micro-dollar (half up) from the exact value."""
    return value.quantize(_MICRO, rounding=ROUND_HALF_UP)


def show_usd(value: Decimal | None) -> str:
    """``$12.500``, ``$0.011``, ``-$0.0045``: 3 to 6 decimals, no float on the way."""
    if value is None:
        return "—"
    text = f"{abs(money6(value)):f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(3, "0")
    return f"{'-' if value < 0 else ''}${int(whole):,}.{frac}"


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(money6(value))
    return value


def _stats_json(stats: Stats) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in stats.as_dict().items()}


def to_json(report: Report) -> dict[str, Any]:
    """The ``--format json`` object."""
    return {
        "by": list(report.by),
        "groups": [{**group.keys, **_stats_json(group.stats)} for group in report.groups],
        "total": _stats_json(report.total),
        "notes": list(report.notes),
        "sources": list(report.sources),
    }


def _key_text(value: Any) -> str:
    return "—" if value is None else str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{money6(value):f}"
    return str(value)


def safe_csv_text(text: str) -> str:
    """Neutralise spreadsheet formula injection: ``=1+1`` -> ``'=1+1``."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv_row(keys: list[Any], stats: Stats) -> list[str]:
    texts = [safe_csv_text(_cell(k)) if isinstance(k, str) else _cell(k) for k in keys]
    return texts + [_cell(v) for v in stats.as_dict().values()]


def to_csv(report: Report) -> str:
    """Header, one line per group, then a ``(total)`` line (money as exact 6-decimal strings)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; also makes csv quote cells holding CR
    writer.writerow([*report.by, *Stats().as_dict()])
    if report.by:
        for group in report.groups:
            writer.writerow(_csv_row([group.keys[k] for k in report.by], group.stats))
    label = [TOTAL_LABEL, *[""] * (len(report.by) - 1)] if report.by else []
    writer.writerow(_csv_row(label, report.total))
    return out.getvalue()


def _human(field: str, value: Any) -> str:
    if field.endswith("_usd"):
        return show_usd(value)
    return f"{value:,}"


def _lines(report: Report) -> list[tuple[list[str], list[str]]]:
    """(key texts, figure texts) per group, then the total."""
    lines = []
    if report.by:
        for group in report.groups:
            figures = group.stats.as_dict()
            lines.append(
                ([_key_text(group.keys[k]) for k in report.by], [_human(f, figures[f]) for f, _ in _SHOWN])
            )
    total = report.total.as_dict()
    label = [TOTAL_LABEL, *[""] * (len(report.by) - 1)] if report.by else []
    lines.append((label, [_human(f, total[f]) for f, _ in _SHOWN]))
    return lines


def to_table(report: Report) -> Table:
    """A rich table for the terminal; the total is the last, bold line."""
    table = Table(title="Cost report", title_justify="left", show_edge=False, header_style="bold")
    for key in report.by:
        table.add_column(Text(key), overflow="fold")
    for _, heading in _SHOWN:
        table.add_column(heading, justify="right", no_wrap=True)
    lines = _lines(report)
    for i, (keys, figures) in enumerate(lines):
        last = i == len(lines) - 1
        table.add_row(
            *(Text(key) for key in keys),  # group keys are data (ids, categories): never markup
            *figures,
            style="bold" if last else None,
            end_section=len(lines) > 1 and i == len(lines) - 2,
        )
    return table


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def to_markdown(report: Report) -> str:
    """A GitHub-flavoured Markdown table (total in bold), notes as a list below it."""
    headings = [*report.by, *(h for _, h in _SHOWN)]
    align = ["---"] * len(report.by) + ["---:"] * len(_SHOWN)
    out = ["| " + " | ".join(_md_escape(h) for h in headings) + " |", "| " + " | ".join(align) + " |"]
    lines = _lines(report)
    for i, (keys, figures) in enumerate(lines):
        cells = [_md_escape(c) for c in (*keys, *figures)]
        if i == len(lines) - 1:
            cells = [f"**{c}**" if c else c for c in cells]
        out.append("| " + " | ".join(cells) + " |")
    out += [""] + [f"- {_md_escape(note)}" for note in report.notes]
    return "\n".join(out).rstrip() + "\n"
