"""Model and provider profiles: the shipped catalog against the official SDK, prices, options, sizes,
lifecycle, and broken profiles refused with the file and key."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Literal, NotRequired, get_args, get_origin, get_type_hints, is_typeddict

import pytest
from runware.types import task_map

from pipeline.config import profiles
from pipeline.config.profiles import (
    ModelProfile,
    default_model,
    load_model_profile,
    load_provider_profile,
    model_profiles,
    option_names,
)
from pipeline.errors import ConfigError
from pipeline.rows import ImageRequest

SHIPPED = profiles.configs_dir() / "models"
CATALOG = (
    "openai:1@2",
    "openai:1@1",
    "openai:4@1",
    "openai:gpt-image@2",
    "openai:gpt-image@2.5-flare",
    "openai:gpt-image@2.5-sunburst",
    "google:4@2",
    "google:4@3",
    "bytedance:5@0",
    "bytedance:seedream@4.5",
    "runware:101@1",
    "runware:100@1",
    "runware:400@1",
    "bfl:5@1",
    "ideogram:4@0",
    "alibaba:qwen-image@2.0",
)
# Keys every curated model has, which the pipeline sets itself (never a profile key).
PLATFORM_KEYS = frozenset(
    {
        "model", "taskType", "taskUUID", "webhookURL", "includeCost", "routing", "numberResults",
        "uploadEndpoint", "ttl", "outputType", "outputFormat", "outputQuality", "deliveryMethod", "safety",
        "advancedFeatures",
    }
)  # fmt: skip
SHUTDOWN_DAY = dt.date(2026, 12, 1)


@cache
def sdk_params() -> dict[str, dict[str, object]]:
    """runware-sdk's imageInference params per AIR: the TypedDicts whose ``model`` is a Literal."""
    found: dict[str, dict[str, object]] = {}
    for value in vars(task_map).values():
        if not (isinstance(value, type) and is_typeddict(value)):
            continue
        hints = get_type_hints(value, include_extras=True)
        model, task = hints.get("model"), hints.get("taskType")
        if get_origin(model) is Literal and task is not None and "imageInference" in get_args(task):
            found[get_args(model)[0]] = hints
    return found


def sdk_hints(model: str) -> dict[str, object]:
    return {k: v for k, v in sdk_params()[model].items() if k not in PLATFORM_KEYS}


def is_required(hint: object) -> bool:
    return get_origin(hint) is not NotRequired


def literal_values(hint: object) -> set[str]:
    inner = get_args(hint)[0] if get_origin(hint) is NotRequired else hint
    return set(get_args(inner)) if get_origin(inner) is Literal else set()


def request(model: str, size: tuple[int, int] | None = None, **options: str) -> ImageRequest:
    """A request for ``model`` with the profile's option defaults, then ``options`` on top."""
    profile = load_model_profile(model)
    chosen = {n: str(o.default) for n, o in profile.options.items() if o.default is not None} | options
    refs = tuple(f"https://example.com/{i}.png" for i in range(int(chosen.pop("refs", "0"))))
    width, height = size if size else (None, None)
    legacy = {name: chosen.pop(name, "") for name in ("quality", "background")}
    return ImageRequest(
        model, "a red chair", width, height, legacy["quality"], legacy["background"], "JPG", 1,
        reference_images=refs, options=tuple(sorted(chosen.items())),
    )  # fmt: skip


def price(model: str, size: tuple[int, int] | None = None, **options: str) -> Decimal:
    return load_model_profile(model).image_price(request(model, size, **options))


class TestCatalog:
    def test_every_model_of_the_issue_ships(self) -> None:
        """All sixteen models of the catalog load from configs/models."""
        assert set(CATALOG) <= set(model_profiles())

    def test_the_job_default_is_gpt_image_2_and_live(self) -> None:
        """A job that names no model gets GPT Image 2, live on the day GPT Image 1 Mini shuts down."""
        assert default_model() == "openai:gpt-image@2"
        assert [p.id for p in model_profiles().values() if p.job_default] == ["openai:gpt-image@2"]
        assert load_model_profile(default_model()).lifecycle.status(SHUTDOWN_DAY) == "live"

    @pytest.mark.parametrize("model", CATALOG)
    def test_keys_are_what_the_sdk_declares(self, model: str) -> None:
        """A profile's top-level keys are among those runware-sdk 1.8 declares for its AIR."""
        profile = load_model_profile(model)
        assert set(profile.keys) <= set(sdk_hints(model)), set(profile.keys) - set(sdk_hints(model))

    @pytest.mark.parametrize("model", CATALOG)
    def test_required_keys_are_kept(self, model: str) -> None:
        """Keys the SDK requires are declared, and sizes are required exactly when width/height are."""
        hints = sdk_hints(model)
        profile = load_model_profile(model)
        assert {k for k, hint in hints.items() if is_required(hint)} <= set(profile.keys)
        assert profile.sizes.required == is_required(hints["width"])

    @pytest.mark.parametrize("model", CATALOG)
    def test_options_go_where_the_model_has_room(self, model: str) -> None:
        """Each option's container (or top-level key) is one of the model's keys."""
        profile = load_model_profile(model)
        for name, option in profile.options.items():
            container = option.at.split(".")[0]
            key = option.wire_name(name) if container == "top" else container
            assert key in profile.keys, f"{model} option {name}"

    @pytest.mark.parametrize("model", CATALOG)
    def test_top_level_enums_match_the_sdk(self, model: str) -> None:
        """resolution, scheduler and acceleration allow exactly the SDK's values for the AIR."""
        hints = sdk_hints(model)
        for name, option in load_model_profile(model).options.items():
            wire = option.wire_name(name)
            if option.at == "top" and literal_values(hints[wire]):
                assert set(option.values) == literal_values(hints[wire]), f"{model} {name}"

    @pytest.mark.parametrize("model", CATALOG)
    def test_every_request_can_be_priced(self, model: str) -> None:
        """The default size is allowed, and a request with only defaults has a positive price."""
        profile = load_model_profile(model)
        assert profile.sizes.default is not None
        assert profile.sizes.problem(*profiles.parse_size(profile.sizes.default)) is None
        assert price(model, profiles.parse_size(profile.sizes.default)) > 0
        if profile.price.by is not None:
            assert profile.options[profile.price.by].default is not None

    @pytest.mark.parametrize("model", ["bytedance:seedream@4.5"])
    def test_recommended_sizes_keep_the_rule(self, model: str) -> None:
        """Seedream 4.5's listed tiers are sizes its pixel and aspect rule allows anyway."""
        sizes = load_model_profile(model).sizes
        rule = sizes.model_copy(update={"tiers": {}, "fixed": ()})
        assert all(rule.problem(*profiles.parse_size(s)) is None for s in sizes.listed())

    def test_models_without_reference_images(self) -> None:
        """Ideogram 4.0 and FLUX.1 take no reference images; Nano Banana Pro takes 14."""
        assert load_model_profile("ideogram:4@0").max_reference_images == 0
        assert load_model_profile("runware:101@1").max_reference_images == 0
        assert load_model_profile("runware:100@1").max_reference_images == 0
        assert load_model_profile("google:4@2").max_reference_images == 14

    def test_options_are_columns(self) -> None:
        """Every declared option is a manifest column, named as the Runware parameter in snake_case."""
        names = option_names()
        for name in ("seed", "steps", "cfg_scale", "negative_prompt", "scheduler", "resolution"):
            assert name in names
        assert {"safety_tolerance", "rendering_speed", "quality", "background"} <= set(names)

    def test_unknown_model_names_the_known_ones(self) -> None:
        with pytest.raises(KeyError, match=r"openai:1@2"):
            load_model_profile("nope:1@1")


class TestPrices:
    @pytest.mark.parametrize(
        ("model", "quality", "size", "usd"),
        [
            ("openai:1@2", "low", (1024, 1024), "0.005"),
            ("openai:1@2", "medium", (1024, 1536), "0.015"),
            ("openai:1@2", "high", (1536, 1024), "0.052"),
            ("openai:1@1", "medium", (1024, 1024), "0.042"),
            ("openai:1@1", "high", (1024, 1536), "0.25"),
            ("openai:4@1", "medium", (1536, 1024), "0.05"),
            ("openai:4@1", "high", (1024, 1536), "0.20"),
        ],
    )
    def test_openai_tables(self, model: str, quality: str, size: tuple[int, int], usd: str) -> None:
        """GPT Image 1 / 1 Mini / 1.5 cost their list price by quality and size (0.1's figures)."""
        assert price(model, size, quality=quality) == Decimal(usd)

    def test_auto_is_budgeted_as_high(self) -> None:
        assert price("openai:1@2", (1024, 1024), quality="auto") == Decimal("0.036")

    def test_nano_banana_2_tiers_and_references(self) -> None:
        """NB2 at 1K with two references: $0.06895 + 2 x $0.00028; a resolution request pays its tier."""
        assert price("google:4@3", (1584, 672), refs="2") == Decimal("0.06895") + 2 * Decimal("0.00028")
        assert price("google:4@3", (512, 512)) == Decimal("0.04657")
        assert price("google:4@3", resolution="2K", refs="1") == Decimal("0.10255") + Decimal("0.00028")
        assert price("google:4@2", (6336, 2688)) == Decimal("0.244")
        assert price("google:4@2", (2048, 2048)) == Decimal("0.138")

    def test_flux_2_pro_per_megapixel(self) -> None:
        """$0.03 for the first MP, $0.015 per extra MP, rounded up."""
        assert price("bfl:5@1", (1024, 1024)) == Decimal("0.03")
        assert price("bfl:5@1", (2048, 2048)) == Decimal("0.03") + 3 * Decimal("0.015")
        assert price("bfl:5@1", (1536, 1024)) == Decimal("0.045")

    def test_flux_1_scales_with_area(self) -> None:
        assert price("runware:101@1", (1024, 1024)) == Decimal("0.0038")
        assert price("runware:101@1", (2048, 2048)) == 4 * Decimal("0.0038")
        assert price("runware:100@1", (512, 512)) == Decimal("0.0013")

    def test_ideogram_by_rendering_speed(self) -> None:
        """Ideogram 4.0 costs $0.03 / $0.06 / $0.10 by rendering speed; DEFAULT when the row says none."""
        assert price("ideogram:4@0", (2048, 2048), rendering_speed="QUALITY") == Decimal("0.10")
        assert price("ideogram:4@0", (2048, 2048), rendering_speed="TURBO") == Decimal("0.03")
        assert price("ideogram:4@0", (2048, 2048)) == Decimal("0.06")

    def test_flat_prices(self) -> None:
        assert price("bytedance:5@0", (4096, 4096)) == Decimal("0.03")
        assert price("alibaba:qwen-image@2.0", (2048, 2048)) == Decimal("0.035")

    def test_token_estimates_cover_the_documented_costs(self) -> None:
        """GPT Image 2 high estimates are at least the doc's example costs, and grow with area."""
        assert price("openai:gpt-image@2", (1536, 1024), quality="high") >= Decimal("0.16538")
        assert price("openai:gpt-image@2", (1024, 768), quality="high", refs="3") >= Decimal("0.16359")
        one = price("openai:gpt-image@2", (1024, 1024), quality="medium")
        assert price("openai:gpt-image@2", (2048, 2048), quality="medium") == 4 * one

    @pytest.mark.parametrize("quality", ["low", "medium", "high"])
    def test_gpt_image_2_5_estimates(self, quality: str) -> None:
        """Sunburst is budgeted above GPT Image 2, Flare below Sunburst."""
        size = (1024, 1024)
        sunburst = price("openai:gpt-image@2.5-sunburst", size, quality=quality)
        assert sunburst > price("openai:gpt-image@2", size, quality=quality)
        assert price("openai:gpt-image@2.5-flare", size, quality=quality) < sunburst

    def test_estimate_counts_every_result(self) -> None:
        profile = load_model_profile("bytedance:5@0")
        req = request("bytedance:5@0", (1024, 1024))
        assert profile.estimate_usd(dataclasses.replace(req, number_results=4)) == Decimal("0.12")


class TestOptions:
    @pytest.mark.parametrize(
        ("model", "name", "text", "canonical"),
        [
            ("google:4@3", "resolution", "2k", "2K"),
            ("ideogram:4@0", "rendering_speed", " quality ", "QUALITY"),
            ("runware:101@1", "cfg_scale", "7", "7.0"),
            ("runware:101@1", "seed", "42.0", "42"),
            ("runware:101@1", "scheduler", "euler a", "Euler a"),
            ("bfl:5@1", "prompt_upsampling", "yes", "true"),
            ("google:4@2", "safety_tolerance", "OFF", "off"),
        ],
    )
    def test_parse_canonicalises(self, model: str, name: str, text: str, canonical: str) -> None:
        """A manifest cell's value becomes one canonical text, whatever its case or number form."""
        assert load_model_profile(model).options[name].parse(text) == canonical

    @pytest.mark.parametrize(
        ("model", "name", "text", "allowed"),
        [
            ("bfl:5@1", "safety_tolerance", "7", "allowed: an integer 0..6"),
            ("runware:400@1", "steps", "1.5", "allowed: an integer 1..50"),
            ("runware:400@1", "acceleration", "max", "allowed: none, low, medium, high"),
            ("openai:gpt-image@2.5-flare", "quality", "auto", "allowed: low, medium, high, xhigh, max"),
            ("google:4@3", "thinking", "deep", "allowed: MINIMAL, HIGH"),
        ],
    )
    def test_parse_refuses_with_what_is_allowed(self, model: str, name: str, text: str, allowed: str) -> None:
        with pytest.raises(ValueError, match=allowed):
            load_model_profile(model).options[name].parse(text)

    def test_wire_names_and_values(self) -> None:
        """cfg_scale goes out as CFGScale (a number), top_p as topP, bools as JSON booleans."""
        flux = load_model_profile("runware:101@1").options["cfg_scale"]
        assert (flux.wire_name("cfg_scale"), flux.to_wire("7.0")) == ("CFGScale", 7.0)
        assert load_model_profile("google:4@3").options["top_p"].wire_name("top_p") == "topP"
        assert load_model_profile("bfl:5@1").options["prompt_upsampling"].to_wire("true") is True

    def test_containers(self) -> None:
        """Options sit where each model's schema puts them."""
        at = {(m, n): o.at for m, p in model_profiles().items() for n, o in p.options.items()}
        assert at["openai:1@2", "quality"] == "providerSettings.openai"
        assert at["openai:gpt-image@2.5-sunburst", "background"] == "settings"
        assert at["bfl:5@1", "safety_tolerance"] == "providerSettings.bfl"
        assert at["google:4@3", "safety_tolerance"] == "providerSettings.google"
        assert at["google:4@3", "thinking"] == "settings"
        assert at["ideogram:4@0", "rendering_speed"] == "settings"
        assert at["runware:400@1", "scheduler"] == "top"


class TestSizes:
    @pytest.mark.parametrize(
        ("model", "size", "reason"),
        [
            ("runware:400@1", (1024, 1040), None),
            ("runware:400@1", (1000, 1000), "multiples of 16"),
            ("runware:400@1", (2064, 1024), "each side must be 512..2048 px"),
            ("bfl:5@1", (256, 256), None),
            ("runware:101@1", (1024, 960), None),
            ("runware:101@1", (1024, 1000), "multiples of 64"),
            ("bytedance:seedream@4.5", (2560, 1440), None),
            ("bytedance:seedream@4.5", (1024, 1024), "at least 3,686,400 pixels"),
            ("bytedance:seedream@4.5", (8192, 512), None),
            ("bytedance:seedream@4.5", (8704, 512), "aspect ratio at most 16:1"),
            ("openai:gpt-image@2.5-flare", (2880, 2880), None),
            ("openai:gpt-image@2.5-flare", (3840, 2176), "at most 8,294,400 pixels"),
            ("alibaba:qwen-image@2.0", (512, 512), None),
            ("alibaba:qwen-image@2.0", (2048, 2064), "each side must be 512..2048 px"),
            ("google:4@3", (1584, 672), None),
            ("google:4@3", (792, 168), "allowed: "),
            ("google:4@2", (1584, 672), "allowed: "),
            ("ideogram:4@0", (1024, 1024), "allowed: 2048x2048, 1440x2880"),
            ("bytedance:5@0", (6048, 2592), None),
        ],
    )
    def test_rules(self, model: str, size: tuple[int, int], reason: str | None) -> None:
        """Sizes are accepted or refused with the reason a user can act on."""
        problem = load_model_profile(model).sizes.problem(*size)
        assert problem is None if reason is None else reason in (problem or "")

    def test_tiers(self) -> None:
        """A Nano Banana size belongs to the tier whose table lists it."""
        sizes = load_model_profile("google:4@3").sizes
        assert sizes.tier_of(3072, 384) == "1K"
        assert sizes.tier_of(12288, 1536) == "4K"
        assert sizes.resolution_needs_references


class TestLifecycle:
    def test_retired_on_shutdown_day(self) -> None:
        """On 2026-12-01, GPT Image 1, 1 Mini and 1.5 are retired; every other model is live."""
        status = {m: p.lifecycle.status(SHUTDOWN_DAY) for m, p in model_profiles().items()}
        retired = {"openai:1@1", "openai:1@2", "openai:4@1"}
        assert {m for m, s in status.items() if s == "retired"} == retired
        assert {s for m, s in status.items() if m not in retired} == {"live"}

    def test_retiring_before(self) -> None:
        assert load_model_profile("openai:4@1").lifecycle.status(dt.date(2026, 11, 1)) == "retiring"

    def test_replacements_are_live_when_needed(self) -> None:
        """Each retiring model names a replacement that is still live on its shutdown day."""
        for profile in model_profiles().values():
            lifecycle = profile.lifecycle
            if lifecycle.shutdown is not None:
                assert lifecycle.replacement is not None, profile.id
                replacement = load_model_profile(lifecycle.replacement).lifecycle
                assert replacement.status(lifecycle.shutdown) == "live"

    def test_warning_names_date_and_replacement(self) -> None:
        warning = load_model_profile("openai:4@1").lifecycle_warning(dt.date(2026, 11, 23))
        assert warning is not None
        assert "2026-12-01" in warning and "8 days" in warning and "openai:gpt-image@2" in warning

    def test_warns_after_shutdown(self) -> None:
        warning = load_model_profile("openai:1@2").lifecycle_warning(dt.date(2027, 1, 1))
        assert warning is not None and "was shut down" in warning

    def test_no_warning_without_a_date(self) -> None:
        assert load_model_profile("google:4@3").lifecycle_warning(SHUTDOWN_DAY) is None
        assert load_model_profile("openai:1@2").lifecycle_warning(dt.date(2026, 1, 1)) is None


@pytest.fixture
def catalog_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A configs folder holding copies of GPT Image 1 Mini and GPT Image 2, read instead of the repo's."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("openai-1-2.toml", "openai-gpt-image-2.toml"):
        shutil.copy(SHIPPED / name, models / name)
    monkeypatch.setattr(profiles, "configs_dir", lambda: tmp_path)
    model_profiles.cache_clear()
    yield models
    model_profiles.cache_clear()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


class TestBrokenProfiles:
    def test_a_copy_loads(self, catalog_dir: Path) -> None:
        assert set(model_profiles()) == {"openai:1@2", "openai:gpt-image@2"}

    def test_bad_container(self, catalog_dir: Path) -> None:
        """An option placed nowhere Runware knows names the file, the key and the places allowed."""
        edit(catalog_dir / "openai-1-2.toml", 'at = "providerSettings.openai"', 'at = "nowhere"')
        with pytest.raises(ConfigError, match=r'an option goes "top", "settings"') as raised:
            model_profiles()
        assert raised.value.path == str(catalog_dir / "openai-1-2.toml")
        assert raised.value.key == "options.quality.at"

    def test_container_the_model_lacks(self, catalog_dir: Path) -> None:
        edit(catalog_dir / "openai-gpt-image-2.toml", 'at = "settings"', 'at = "providerSettings.openai"')
        with pytest.raises(ConfigError, match=r"option quality: providerSettings.openai is not among"):
            model_profiles()

    def test_price_by_must_be_an_option(self, catalog_dir: Path) -> None:
        edit(catalog_dir / "openai-1-2.toml", 'by = "quality"', 'by = "colour"')
        with pytest.raises(ConfigError, match=r"price.by: 'colour' is not an option") as raised:
            model_profiles()
        assert raised.value.path == str(catalog_dir / "openai-1-2.toml")

    def test_two_job_defaults(self, catalog_dir: Path) -> None:
        """Two profiles claiming to be the job default are refused, naming both."""
        edit(catalog_dir / "openai-1-2.toml", 'name = "GPT Image 1 Mini"', 'name = "x"\njob_default = true')
        with pytest.raises(ConfigError, match=r"job_default") as raised:
            model_profiles()
        assert "openai:1@2" in str(raised.value) and "openai:gpt-image@2" in str(raised.value)

    def test_unknown_replacement(self, catalog_dir: Path) -> None:
        edit(catalog_dir / "openai-1-2.toml", 'replacement = "openai:gpt-image@2"', 'replacement = "x:1@1"')
        with pytest.raises(ConfigError, match=r"unknown model 'x:1@1'"):
            model_profiles()

    def test_unknown_keys_are_refused(self, catalog_dir: Path) -> None:
        edit(catalog_dir / "openai-1-2.toml", 'name = "GPT Image 1 Mini"', 'name = "x"\ncolour = "red"')
        with pytest.raises(ConfigError, match=r"colour"):
            model_profiles()


class TestProviderProfiles:
    def test_sandbox_is_embedded(self) -> None:
        assert load_provider_profile("sandbox").embedded

    def test_runware_points_at_the_real_api(self) -> None:
        assert load_provider_profile("runware").endpoint == "https://api.runware.ai/v1"

    def test_unknown_profile_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match=r"no provider profile 'nope'"):
            load_provider_profile("nope")


def test_a_new_model_is_one_file() -> None:
    """A model profile validates from TOML data alone; unknown keys are refused."""
    data: dict[str, object] = {
        "id": "x:1@1",
        "name": "X",
        "keys": ["positivePrompt", "width", "height"],
        "sizes": {"fixed": ["512x512"], "default": "512x512"},
        "prompt": {"max_chars": 10},
        "price": {"kind": "flat", "usd": "0.001"},
    }
    profile = ModelProfile.model_validate(data)
    assert profile.image_price(ImageRequest("x:1@1", "p", 512, 512, "", "", "JPG", 1)) == Decimal("0.001")
    with pytest.raises(ValueError, match="extra"):
        ModelProfile.model_validate({**data, "colour": "red"})
