"""Model and provider profiles."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.profiles import (
    ModelProfile,
    load_model_profile,
    load_provider_profile,
    model_profiles,
)


class TestModelProfiles:
    def test_both_openai_models_are_known(self) -> None:
        """GPT Image 1 Mini and GPT Image 1 both ship with a profile."""
        assert {"openai:1@1", "openai:1@2"} <= set(model_profiles())

    @pytest.mark.parametrize(
        ("model", "quality", "size", "price"),
        [
            ("openai:1@2", "low", (1024, 1024), "0.005"),
            ("openai:1@2", "medium", (1024, 1024), "0.011"),
            ("openai:1@2", "medium", (1024, 1536), "0.015"),
            ("openai:1@2", "high", (1536, 1024), "0.052"),
            ("openai:1@1", "low", (1536, 1024), "0.016"),
            ("openai:1@1", "medium", (1024, 1024), "0.042"),
            ("openai:1@1", "high", (1024, 1536), "0.25"),
        ],
    )
    def test_list_prices(self, model: str, quality: str, size: tuple[int, int], price: str) -> None:
        """Prices per image match OpenAI's list price by quality and size."""
        assert load_model_profile(model).price_usd(quality, *size) == Decimal(price)

    def test_auto_is_budgeted_as_high(self) -> None:
        """`auto` quality is priced as high, so a budget is never underestimated."""
        mini = load_model_profile("openai:1@2")
        assert mini.price_usd("auto", 1024, 1024) == mini.price_usd("high", 1024, 1024)

    def test_only_the_three_openai_sizes(self) -> None:
        mini = load_model_profile("openai:1@2")
        assert mini.allows_size(1536, 1024)
        assert not mini.allows_size(512, 512)

    def test_unknown_model_names_the_known_ones(self) -> None:
        with pytest.raises(KeyError, match=r"openai:1@2"):
            load_model_profile("nope:1@1")


class TestLifecycle:
    def test_warns_a_week_before_shutdown(self) -> None:
        """The mini shuts down on 2026-12-01; a job a week before is warned."""
        warning = load_model_profile("openai:1@2").lifecycle_warning(dt.date(2026, 11, 23))
        assert warning is not None
        assert "2026-12-01" in warning and "8 days" in warning

    def test_warns_after_shutdown(self) -> None:
        warning = load_model_profile("openai:1@2").lifecycle_warning(dt.date(2027, 1, 1))
        assert warning is not None and "was shut down" in warning

    def test_no_warning_far_from_shutdown_or_without_date(self) -> None:
        assert load_model_profile("openai:1@2").lifecycle_warning(dt.date(2026, 1, 1)) is None
        assert load_model_profile("openai:1@1").lifecycle_warning(dt.date(2026, 11, 23)) is None


class TestProviderProfiles:
    def test_sandbox_is_embedded(self) -> None:
        assert load_provider_profile("sandbox").embedded

    def test_runware_points_at_the_real_api(self) -> None:
        assert load_provider_profile("runware").endpoint == "https://api.runware.ai/v1"

    def test_unknown_profile_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match=r"no provider profile 'nope'"):
            load_provider_profile("nope")


def test_a_new_model_is_one_file(tmp_path: Path) -> None:
    """A model profile validates from TOML alone; unknown keys are refused."""
    data = {
        "id": "x:1@1",
        "name": "X",
        "provider_settings_key": "x",
        "sizes": ["512x512"],
        "qualities": ["standard"],
        "backgrounds": ["opaque"],
        "max_reference_images": 0,
        "max_prompt_chars": 10,
        "max_number_results": 1,
        "prices": {"standard": {"512x512": "0.001"}},
    }
    assert ModelProfile.model_validate(data).price_usd("standard", 512, 512) == Decimal("0.001")
    with pytest.raises(ValueError, match="extra"):
        ModelProfile.model_validate({**data, "colour": "red"})
