"""``pipeline report --html FILE``: one self-contained page (inline CSS, inline SVG, data-URI thumbnails).

    write_html(report, facts, Path("output/demo/report.html"))

Nothing on the page points outside it, so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image, UnidentifiedImageError

from pipeline.errors import UsageError
from pipeline.output.report.build import Facts, Report, gallery, spend_over_time
from pipeline.output.report.format import show_usd

__all__ = ["BY_GROUP_COLOUR", "OVER_TIME_COLOUR", "WASTE_COLOUR", "render_html", "thumbnail", "write_html"]

OVER_TIME_COLOUR = "#7c3aed"  # distinctive bar colours: the browser test looks for them in a screenshot
BY_GROUP_COLOUR = "#f97316"
WASTE_COLOUR = "#e11d48"
GALLERY_LIMIT = 240
TABLE_LIMIT = 500  # groups listed on the page; the CSV/JSON formats have them all
CHART_LIMIT = 20
THUMB_PX = 192
_W, _H, _PAD = 720, 240, 36


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    label: str
    title: str
    waste_h: float = 0.0


def _scale(values: list[Decimal]) -> Decimal:
    top = max(values, default=Decimal(0))
    return top if top > 0 else Decimal(1)


def time_bars(points: list[tuple[str, Decimal, Decimal]]) -> list[Bar]:
    """Vertical bars, one per time bucket; the wasted part is drawn over the bottom of the bar."""
    if not points:
        return []
    top, slot = _scale([s for _, s, _ in points]), min((_W - 2 * _PAD) / len(points), 60.0)
    left = (_W - slot * len(points)) / 2  # few buckets: narrow bars, centred
    bars = []
    for i, (label, spend, wasted) in enumerate(points):
        h = float(spend / top) * (_H - 2 * _PAD)
        bars.append(
            Bar(
                x=left + i * slot + slot * 0.1,
                y=_H - _PAD - h,
                w=max(slot * 0.8, 1.0),
                h=h,
                label=label,
                title=f"{label}: {show_usd(spend)} (wasted {show_usd(wasted)})",
                waste_h=float(wasted / top) * (_H - 2 * _PAD),
            )
        )
    return bars


def group_bars(report: Report) -> list[Bar]:
    """Horizontal bars, one per group (at most 20, largest spend first)."""
    groups = sorted(report.groups, key=lambda g: g.stats.spend, reverse=True)[:CHART_LIMIT]
    top, row = _scale([g.stats.spend for g in groups]), 26
    bars = []
    for i, group in enumerate(groups):
        label = " / ".join("—" if v is None else str(v) for v in group.keys.values()) or "all"
        w = float(group.stats.spend / top) * (_W - 330)
        images = group.stats.images
        title = f"{label}: {show_usd(group.stats.spend)}, {images} image{'' if images == 1 else 's'}"
        waste = float(group.stats.wasted / top) * (_W - 330)
        bars.append(Bar(x=170, y=8 + i * row, w=w, h=row - 8, label=label, title=title, waste_h=waste))
    return bars


def thumbnail(path: Path, px: int = THUMB_PX) -> str | None:
    """A small JPEG of the image at ``path`` as a data URI; None when it is missing or unreadable."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (px, px))  # JPEG: decode at a reduced scale, much faster
            image.thumbnail((px, px))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=70)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _local(facts: Facts, row: dict[str, Any]) -> Path | None:
    if not row.get("local_path"):
        return None
    path = Path(row["local_path"])
    if not path.is_absolute():
        path = facts.sources[row["source"]].results.parent / path
    return path


def _excerpt(text: str | None, n: int = 90) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def cards(facts: Facts, limit: int = GALLERY_LIMIT) -> tuple[list[dict[str, Any]], int]:
    """Contact-sheet cards (images with thumbnails, failed rows with their error) and how many in all."""
    rows, count = gallery(facts, limit)
    out = []
    for row in rows:
        local = _local(facts, row)
        failed = row["kind"] == "failed"
        cost = row["cost_nano"]
        out.append(
            {
                "id": row["id"],
                "index": row.get("result_index"),
                "failed": failed,
                "thumb": None if failed or local is None else thumbnail(local),
                "prompt": _excerpt(row.get("prompt")),
                "cost": "—" if cost is None else show_usd(Decimal(cost).scaleb(-9)),
                "error": f"{row.get('error_code') or 'error'}: {_excerpt(row.get('error_message'), 140)}",
            }
        )
    return out, count


def render_html(report: Report, facts: Facts) -> str:
    """The whole page as one string."""
    env = Environment(loader=PackageLoader("pipeline", "templates"), autoescape=select_autoescape(["html"]))
    sheet, count = cards(facts)
    total = report.total
    points = spend_over_time(facts)
    return env.get_template("report.html").render(
        report=report,
        total=total,
        usd=show_usd,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        time_bars=time_bars(points),
        time_peak=max((s for _, s, _ in points), default=None),
        group_bars=group_bars(report),
        by_label=" / ".join(report.by) or "all rows",
        chart_limit=CHART_LIMIT,
        table_groups=report.groups[:TABLE_LIMIT],
        cards=sheet,
        card_count=count,
        chart={"w": _W, "h": _H, "pad": _PAD},
        colours={"time": OVER_TIME_COLOUR, "group": BY_GROUP_COLOUR, "waste": WASTE_COLOUR},
    )


def write_html(report: Report, facts: Facts, path: Path) -> None:
    """Render and write the page (parent folders created)."""
    page = render_html(report, facts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror or exc})") from exc
