"""`pipeline report` on the command line: formats, files, CSV safety, exit codes, the HTML page."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.report_data import (
    at,
    result_row,
    shop_job,
    succeeded_event,
    write_image,
    write_ledger,
    write_results,
)
from PIL import Image

from pipeline.cli import main
from pipeline.output.report.html import BY_GROUP_COLOUR, OVER_TIME_COLOUR


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", *argv])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


class TestFormats:
    def test_json_shape(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--format json: groups with their keys and figures, a total, money as rounded numbers."""
        code, out, _ = run(capsys, str(shop_job(tmp_path / "shop")), "--by", "category", "--format", "json")
        payload = json.loads(out)
        assert code == 0
        assert payload["total"]["spend_usd"] == 0.052
        assert payload["total"]["wasted_usd"] == 0.015
        hats = next(g for g in payload["groups"] if g["category"] == "hats")
        assert hats | {"spend_usd": 0.03, "images": 1, "rows_failed": 1} == hats
        assert {"avg_cost_per_image_usd", "estimate_usd", "rows_rejected"} <= set(hats)

    def test_global_json_flag(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--json alone prints the JSON report and nothing else on stdout."""
        _, out, _ = run(capsys, str(shop_job(tmp_path / "shop")), "--json")
        assert json.loads(out)["total"]["images"] == 3

    def test_table(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The default table shows each group and a total line with dollar amounts."""
        _, out, _ = run(capsys, str(shop_job(tmp_path / "shop")), "--by", "category")
        assert "hats" in out and "shoes" in out
        total = next(line for line in out.splitlines() if "(total)" in line)
        assert "$0.052" in total and "$0.015" in total

    def test_markdown(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--format markdown: a pipe table with a bold total."""
        _, out, _ = run(capsys, str(shop_job(tmp_path / "shop")), "--by", "day", "--format", "markdown")
        lines = out.splitlines()
        assert lines[0].startswith("| day |")
        assert "| **(total)** |" in out and "**$0.052**" in out

    def test_output_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """-o FILE writes the report there and leaves stdout empty."""
        target = tmp_path / "r.csv"
        _, out, _ = run(capsys, str(shop_job(tmp_path / "shop")), "--format", "csv", "-o", str(target))
        assert out == ""
        rows = list(csv.DictReader(io.StringIO(target.read_text())))
        assert rows[-1]["spend_usd"] == "0.052000"

    def test_unknown_column_exits_2(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A bad --by is a usage error (exit 2) with a message, not a traceback."""
        code, _, err = run(capsys, str(shop_job(tmp_path / "shop")), "--by", "colour")
        assert code == 2
        assert "--by colour" in err and "Traceback" not in err

    def test_json_flag_conflicting_with_format(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json with --format csv is a usage error rather than a surprise."""
        code, out, err = run(capsys, str(shop_job(tmp_path / "shop")), "--json", "--format", "csv")
        assert (code, out) == (2, "")
        assert "--json" in err


class TestCsvSafety:
    @pytest.mark.parametrize("evil", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
    def test_formula_cells_are_neutralised(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], evil: str
    ) -> None:
        """A text cell starting with = + - @ tab or CR gets a leading apostrophe; numbers are untouched."""
        write_results(tmp_path / "j", [result_row("a", category=evil)])
        target = tmp_path / "r.csv"
        run(capsys, str(tmp_path / "j"), "--by", "category", "--format", "csv", "-o", str(target))
        with target.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows[0]["category"] == "'" + evil
        assert rows[0]["spend_usd"] == "0.011000"


def _shop_with_images(out: Path) -> None:
    colours = [(0, 200, 120), (30, 90, 220), (240, 200, 0)]
    rows = []
    for i in range(6):
        write_image(out / "images" / f"p{i}_0.jpg", colours[i % 3])
        rows.append(
            result_row(
                f"p{i}",
                cost=0.011 + 0.004 * (i % 3),
                when=at(20 + i % 2, 9 + i),
                local_path=f"images/p{i}_0.jpg",
                category=["shoes", "hats", "bags"][i % 3],
            )
        )
    rows.append(
        result_row("bad", status="failed", when=at(21, 16), error=("invalidPrompt", "refused <b>x</b>"))
    )
    write_results(out, rows)
    write_ledger(out, [succeeded_event("p1", "dup", [0.015], at(21, 10))])


class TestHtml:
    def test_page_is_self_contained(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """No external URL; CSS, SVG charts and thumbnails inline; errors escaped."""
        _shop_with_images(tmp_path / "shop")
        page_path = tmp_path / "report.html"
        code, _, _ = run(capsys, str(tmp_path / "shop"), "--by", "category", "--html", str(page_path))
        page = page_path.read_text()
        assert code == 0
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
        assert "url(" not in page and "@import" not in page
        assert page.count("data:image/jpeg;base64,") == 6
        assert page.count("<svg") == 2 and "<style>" in page
        assert "refused &lt;b&gt;x&lt;/b&gt;" in page
        assert "$0.0" in page and "Contact sheet" in page

    def test_missing_local_image_shows_placeholder(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An image never downloaded gets a placeholder, not a broken link."""
        write_results(tmp_path / "j", [result_row("a", local_path="images/gone.jpg")])
        page_path = tmp_path / "r.html"
        run(capsys, str(tmp_path / "j"), "--html", str(page_path))
        assert "no local copy" in page_path.read_text()


def test_html_with_many_groups_lists_the_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--by id over 520 rows: the chart shows the top 20, the table the first 500; the page says so."""
    write_results(tmp_path / "j", [result_row(f"r{i:03}") for i in range(520)])
    page = tmp_path / "r.html"
    run(capsys, str(tmp_path / "j"), "--by", "id", "--html", str(page))
    text = page.read_text()
    assert "top 20 of 520" in text and "first 500 of 520" in text
    assert text.count("<tr>") == 1 + 500  # header + groups (the total row has its own class)


def _pixels_near(image: Image.Image, hex_colour: str, tolerance: int = 14) -> list[tuple[int, int]]:
    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    rgb = image.convert("RGB")
    width, height = rgb.size
    data = rgb.load()
    assert data is not None
    return [
        (x, y)
        for y in range(0, height, 2)
        for x in range(0, width, 2)
        if all(abs(c - t) <= tolerance for c, t in zip(data[x, y], target, strict=True))
    ]


def _bbox(points: list[tuple[int, int]]) -> tuple[int, int, int, int]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="chromium not installed (apt-get install -y chromium)",
)
@pytest.mark.slow  # starts headless Chromium
def test_html_renders_in_a_real_browser(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Headless chromium screenshot: both charts show their bar colours, thumbnails are not blank."""
    _shop_with_images(tmp_path / "shop")
    page = tmp_path / "report.html"
    run(capsys, str(tmp_path / "shop"), "--by", "category", "--html", str(page))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,1500",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )
    with Image.open(shot) as image:
        width, _ = image.size
        time_bars = _pixels_near(image, OVER_TIME_COLOUR)
        group_bars = _pixels_near(image, BY_GROUP_COLOUR)
        thumbs = _pixels_near(image, "#00c878", tolerance=24)  # the (0, 200, 120) test images
    assert len(time_bars) > 50 and len(group_bars) > 50
    assert _bbox(time_bars)[2] < width / 2 < _bbox(group_bars)[0]  # side by side: time left, groups right
    thumb_box = _bbox(thumbs)
    assert len(thumbs) > 2000  # two 180px thumbnails of that colour, sampled every other pixel
    assert thumb_box[1] > _bbox(time_bars)[3]  # the contact sheet sits below the charts
