"""`pipeline models`: what a user sees of the catalog, in the terminal and as JSON."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.cli import models as models_cli
from pipeline.config import profiles
from pipeline.config.profiles import load_model_profile, model_profiles

RETIRED_ON_SHUTDOWN_DAY = {"openai:1@1", "openai:1@2", "openai:4@1"}


def exit_code(*argv: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    return int(exited.value.code or 0)


@pytest.fixture
def on(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set the command's "today" (UTC)."""

    def set_today(day: dt.date) -> None:
        monkeypatch.setattr(models_cli, "today", lambda: day)

    set_today(dt.date(2026, 12, 1))
    return set_today


def line_of(out: str, model: str) -> str:
    """The table line whose first cell is ``model``."""
    return next(line for line in out.splitlines() if line.lstrip("│┃ ").startswith(model + " "))


class TestTable:
    def test_every_model_is_listed(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        assert exit_code("models") == 0
        out = capsys.readouterr().out
        for model in model_profiles():
            assert line_of(out, model)

    def test_mini_is_retired_with_its_replacement(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        """On 2026-12-01 GPT Image 1 Mini shows as retired that day, pointing at GPT Image 2."""
        assert exit_code("models") == 0
        row = line_of(capsys.readouterr().out, "openai:1@2")
        assert "GPT Image 1 Mini" in row
        assert "retired on 2026-12-01" in row
        assert "openai:gpt-image@2" in row

    def test_retiring_shows_the_days_left(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        on(dt.date(2026, 11, 23))
        assert exit_code("models") == 0
        out = capsys.readouterr().out
        assert "retiring on 2026-12-01 (in 8 days)" in line_of(out, "openai:4@1")
        assert "retired on 2026-10-23" in line_of(out, "openai:1@1")

    def test_live_models_come_first(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        """Retired models are listed after every live one, so a user sees what can run first."""
        assert exit_code("models") == 0
        out = capsys.readouterr().out
        rows = [line for line in out.splitlines() if "live" in line or "retired on" in line]
        first_retired = next(i for i, line in enumerate(rows) if "retired on" in line)
        assert all("retired on" in line for line in rows[first_retired:])

    def test_names_are_printed_verbatim(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        """FLUX.2 [pro] keeps its brackets: names are never read as rich markup."""
        assert exit_code("models") == 0
        out = capsys.readouterr().out
        assert "FLUX.2 [pro]" in line_of(out, "bfl:5@1")
        assert "FLUX.1 [schnell]" in line_of(out, "runware:100@1")

    def test_prices_and_sizes(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        assert exit_code("models") == 0
        out = capsys.readouterr().out
        assert "$0.03 first MP + $0.015 per extra MP" in line_of(out, "bfl:5@1")
        assert "low $0.005 .. high $0.052 per image" in line_of(out, "openai:1@2")
        assert "256-2048 px a side, multiples of 16" in line_of(out, "bfl:5@1")

    def test_status_filter(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        assert exit_code("models", "--status", "live") == 0
        out = capsys.readouterr().out
        assert "retired" not in out and "openai:1@2 " not in out
        assert "google:4@3" in out

    def test_unknown_status_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert exit_code("models", "--status", "gone") == 2
        assert "invalid choice" in capsys.readouterr().err


class TestJson:
    def models(self, capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
        assert exit_code("models", "--json", *argv) == 0
        out = capsys.readouterr().out
        assert out.count("\n") == 1, "exactly one JSON object on stdout"
        listed: list[dict[str, Any]] = json.loads(out)["models"]
        return listed

    def test_shape(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        """Every model, with the fields DESIGN.md names, and exactly one job default."""
        listed = self.models(capsys)
        assert {m["id"] for m in listed} == set(model_profiles())
        keys = {"id", "name", "status", "shutdown_date", "release_date", "replacement", "sizes", "prices"}
        assert all(keys | {"options", "max_reference_images", "job_default"} <= set(m) for m in listed)
        assert [m["id"] for m in listed if m["job_default"]] == ["openai:gpt-image@2"]

    def test_mini(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        mini = next(m for m in self.models(capsys) if m["id"] == "openai:1@2")
        assert (mini["status"], mini["shutdown_date"]) == ("retired", "2026-12-01")
        assert mini["replacement"] == "openai:gpt-image@2"
        assert mini["options"] == ["quality", "background"]
        assert mini["max_reference_images"] == 16

    def test_statuses_today(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        listed = self.models(capsys)
        assert {m["id"] for m in listed if m["status"] == "retired"} == RETIRED_ON_SHUTDOWN_DAY
        assert {m["status"] for m in listed if m["id"] not in RETIRED_ON_SHUTDOWN_DAY} == {"live"}

    def test_filter(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        assert {m["id"] for m in self.models(capsys, "--status", "retired")} == RETIRED_ON_SHUTDOWN_DAY

    def test_options_of_a_model(self, on: Any, capsys: pytest.CaptureFixture[str]) -> None:
        ideogram = next(m for m in self.models(capsys) if m["id"] == "ideogram:4@0")
        assert ideogram["options"] == ["rendering_speed", "magic_prompt"]
        assert ideogram["prices"] == "TURBO $0.03, DEFAULT $0.06, QUALITY $0.10 per image"
        assert ideogram["max_reference_images"] == 0


class TestPriceText:
    @pytest.mark.parametrize(
        ("model", "text"),
        [
            ("openai:1@2", "low $0.005 .. high $0.052 per image"),
            ("bytedance:5@0", "$0.03 per image"),
            ("google:4@2", "1K $0.138, 2K $0.138, 4K $0.244 per image"),
            (
                "google:4@3",
                "0.5K $0.04657, 1K $0.06895, 2K $0.10255, 4K $0.15295 per image + $0.00028 per reference",
            ),
            ("bfl:5@1", "$0.03 first MP + $0.015 per extra MP + $0.015 per reference"),
            ("runware:101@1", "$0.0038 per MP"),
            ("openai:gpt-image@2", "token-billed, est. medium $0.053 per 1 MP (low $0.006 .. high $0.211)"),
        ],
    )
    def test_price_text(self, model: str, text: str) -> None:
        """Each price kind reads as a short phrase with the profile's own figures."""
        assert models_cli.price_text(load_model_profile(model)) == text


def test_a_broken_catalog_exits_2_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A profile with a bad option container stops the command with the file and the key."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("openai-1-2.toml", "openai-gpt-image-2.toml"):
        shutil.copy(profiles.configs_dir() / "models" / name, models / name)
    broken = models / "openai-1-2.toml"
    broken.write_text(broken.read_text().replace('at = "providerSettings.openai"', 'at = "nowhere"', 1))
    monkeypatch.setattr(profiles, "configs_dir", lambda: tmp_path)
    model_profiles.cache_clear()
    try:
        assert exit_code("models") == 2
    finally:
        model_profiles.cache_clear()
    err = capsys.readouterr().err
    assert f"{broken}: options.quality.at" in err
