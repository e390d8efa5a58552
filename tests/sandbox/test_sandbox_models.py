"""The sandbox validates and prices every model of the catalog from its profile, over real HTTP."""

from __future__ import annotations

import io
import math
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from helpers.sandbox_tasks import default_request, inference, model_task
from PIL import Image

from pipeline.config.profiles import MEGAPIXEL, load_model_profile, model_profiles, parse_size
from pipeline.sandbox import SandboxHandle, SandboxSettings, running_sandbox

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer k"}
REF = "https://example.com/ref.jpg"


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with running_sandbox(SandboxSettings()) as sb:
        yield sb


async def send(http: httpx.AsyncClient, sb: SandboxHandle, task: dict[str, Any]) -> httpx.Response:
    return await http.post(sb.url, json=[task], headers=AUTH)


async def cost_of(http: httpx.AsyncClient, sb: SandboxHandle, task: dict[str, Any]) -> Decimal:
    response = await send(http, sb, task)
    assert response.status_code == 200, response.text
    return Decimal(str(response.json()["data"][0]["cost"]))


async def refusal(http: httpx.AsyncClient, sb: SandboxHandle, task: dict[str, Any]) -> tuple[str, str]:
    """(code, parameter) of a 400 answer; asserts nothing was charged."""
    response = await send(http, sb, task)
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert sb.billing()["tasks"] == 0
    return error["code"], error["parameter"]


class TestEveryModel:
    @pytest.mark.parametrize("model", sorted(model_profiles()))
    async def test_the_pipelines_task_is_accepted_at_the_profiles_price(
        self, model: str, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """What the pipeline sends for a default row of any model is accepted and billed as its profile
        says: the list price, or (token-billed) a metered amount below the estimate."""
        profile = load_model_profile(model)
        estimate = profile.image_price(default_request(model))
        cost = await cost_of(http, sandbox, model_task(model))
        if profile.price.kind == "token":
            assert estimate * Decimal("0.7") <= cost < estimate
        else:
            assert cost == estimate
        assert Decimal(str(sandbox.billing()["total_usd"])) == cost


class TestUndeclaredKeys:
    @pytest.mark.parametrize(
        ("model", "extra", "parameter"),
        [
            ("openai:1@2", {"seed": 42}, "seed"),
            ("openai:1@2", {"settings": {"quality": "low"}}, "settings.quality"),
            ("openai:gpt-image@2", {"providerSettings": {"openai": {"quality": "low"}}}, "providerSettings"),
            ("openai:gpt-image@2", {"negativePrompt": "blurry"}, "negativePrompt"),
            ("bfl:5@1", {"CFGScale": 3.5}, "CFGScale"),
            ("bfl:5@1", {"providerSettings": {"bfl": {"raw": True}}}, "providerSettings.bfl.raw"),
            ("google:4@3", {"settings": {"style": "noir"}}, "settings.style"),
            ("runware:100@1", {"inputs": {"referenceImages": [REF]}}, "inputs.referenceImages"),
            ("runware:400@1", {"inputs": {"maskImage": REF}}, "inputs.maskImage"),
        ],
    )
    async def test_key_outside_the_profile_is_unsupported(
        self,
        model: str,
        extra: dict[str, Any],
        parameter: str,
        sandbox: SandboxHandle,
        http: httpx.AsyncClient,
    ) -> None:
        """A key the model does not declare is refused as the real API does: unsupportedParameter, named."""
        task = {**model_task(model), **extra}
        assert await refusal(http, sandbox, task) == ("unsupportedParameter", parameter)

    async def test_provider_settings_of_another_provider(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """providerSettings for a provider the model has no option with: unknownProviderSettingsProvider."""
        task = {**model_task("bfl:5@1"), "providerSettings": {"google": {"safetyTolerance": "low"}}}
        code, parameter = await refusal(http, sandbox, task)
        assert (code, parameter) == ("unknownProviderSettingsProvider", "providerSettings.google")


class TestValues:
    @pytest.mark.parametrize(
        ("model", "extra", "parameter"),
        [
            ("runware:400@1", {"steps": 99}, "steps"),
            ("runware:400@1", {"steps": 2.5}, "steps"),
            ("runware:400@1", {"CFGScale": "high"}, "CFGScale"),
            ("runware:400@1", {"scheduler": "Teleport"}, "scheduler"),
            ("runware:400@1", {"seed": True}, "seed"),
            (
                "bfl:5@1",
                {"providerSettings": {"bfl": {"safetyTolerance": 7}}},
                "providerSettings.bfl.safetyTolerance",
            ),
            ("google:4@3", {"settings": {"temperature": 3}}, "settings.temperature"),
            ("openai:gpt-image@2", {"settings": {"quality": "ultra"}}, "settings.quality"),
        ],
    )
    async def test_bad_option_value_is_400_naming_it(
        self,
        model: str,
        extra: dict[str, Any],
        parameter: str,
        sandbox: SandboxHandle,
        http: httpx.AsyncClient,
    ) -> None:
        """An option outside its type, values or range is refused, naming the parameter."""
        task = {**model_task(model), **extra}
        code, named = await refusal(http, sandbox, task)
        assert named == parameter
        assert code.startswith("invalid")

    async def test_message_says_what_is_allowed(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """The refusal's message carries the profile's rule."""
        response = await send(http, sandbox, {**model_task("runware:400@1"), "steps": 99})
        assert "1..50" in response.json()["errors"][0]["message"]

    async def test_options_in_range_are_accepted(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """Top-level, settings and providerSettings options within their rules pass."""
        tasks = [
            {**model_task("runware:400@1"), "seed": 7, "steps": 28, "CFGScale": 4, "scheduler": "Euler"},
            {
                **model_task("bfl:5@1"),
                "providerSettings": {"bfl": {"safetyTolerance": 6, "promptUpsampling": True}},
            },
            {**model_task("google:4@3"), "settings": {"temperature": 1.5, "topP": 0.9, "thinking": "HIGH"}},
        ]
        for task in tasks:
            assert (await send(http, sandbox, task)).status_code == 200


class TestSizes:
    @pytest.mark.parametrize(
        ("model", "width", "height"),
        [
            ("openai:1@2", 512, 512),  # not in the fixed list
            ("openai:gpt-image@2", 1000, 1000),  # not multiples of 16
            ("openai:gpt-image@2", 3840, 480),  # aspect over 3:1
            ("bfl:5@1", 4096, 4096),  # sides over 2048
            ("runware:100@1", 1000, 1024),  # not multiples of 64
        ],
    )
    async def test_size_outside_the_rule_names_width(
        self, model: str, width: int, height: int, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """A size the model's list or rule does not allow is a 400 naming width."""
        task = model_task(model, width=width, height=height)
        assert await refusal(http, sandbox, task) == ("invalidSize", "width")

    async def test_required_size_missing(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """A model that requires a size refuses a task without one, or with half of one."""
        task = model_task("runware:400@1")
        del task["width"], task["height"]
        assert await refusal(http, sandbox, task) == ("missingParameter", "width")
        half = {**model_task("runware:400@1")}
        del half["height"]
        assert await refusal(http, sandbox, half) == ("missingParameter", "height")

    async def test_optional_size_renders_the_default(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """A model whose size is optional renders its default size when none is asked."""
        task = model_task("openai:gpt-image@2", width=None, height=None, output_format="PNG")
        item = (await send(http, sandbox, task)).json()["data"][0]
        image = Image.open(io.BytesIO((await http.get(item["imageURL"])).content))
        assert image.size == (1024, 1024)

    async def test_rule_size_is_rendered_as_asked(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """Any size the rule allows is the size of the image."""
        task = model_task("runware:400@1", width=1152, height=640)
        item = (await send(http, sandbox, task)).json()["data"][0]
        assert Image.open(io.BytesIO((await http.get(item["imageURL"])).content)).size == (1152, 640)


class TestResolution:
    async def test_resolution_with_references_renders_the_tier(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """resolution alone (with references) renders the tier's first size and costs the tier's price
        plus each input image."""
        profile = load_model_profile("google:4@3")
        task = model_task(
            "google:4@3", (REF, REF), width=None, height=None, options=(("resolution", "0.5K"),)
        )
        response = await send(http, sandbox, task)
        item = response.json()["data"][0]
        price = profile.price
        assert Decimal(str(item["cost"])) == price.tiers["0.5K"] + 2 * price.per_input_image
        image = Image.open(io.BytesIO((await http.get(item["imageURL"])).content))
        assert f"{image.size[0]}x{image.size[1]}" == profile.sizes.tiers["0.5K"][0]

    async def test_width_and_height_priced_by_their_tier(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """A listed width x height is priced as the tier that lists it."""
        profile = load_model_profile("google:4@3")
        cost = await cost_of(http, sandbox, model_task("google:4@3", width=2048, height=2048))
        assert cost == profile.price.tiers["2K"]

    async def test_no_size_at_all_is_the_default_size(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """Neither size nor resolution: the model's default size, priced as the tier that lists it."""
        profile = load_model_profile("google:4@3")
        assert profile.sizes.default is not None
        tier = profile.sizes.tier_of(*parse_size(profile.sizes.default))
        assert tier is not None
        task = model_task("google:4@3", width=None, height=None)
        assert await cost_of(http, sandbox, task) == profile.price.tiers[tier]

    async def test_resolution_and_size_together(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """resolution cannot be combined with width and height."""
        task = {**model_task("google:4@3", (REF,)), "resolution": "1K"}
        assert await refusal(http, sandbox, task) == ("incompatibleParameters", "resolution")

    async def test_resolution_needs_references(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """Where the model says so, resolution without reference images is refused."""
        task = model_task("google:4@3", width=None, height=None, options=(("resolution", "1K"),))
        assert await refusal(http, sandbox, task) == ("missingParameter", "inputs.referenceImages")


class TestPrices:
    async def test_per_megapixel(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """A per-megapixel price charges the first MP and each further one begun, plus each reference."""
        price = load_model_profile("bfl:5@1").price
        assert price.first_mp is not None and price.extra_mp is not None
        task = model_task("bfl:5@1", (REF, REF), width=1536, height=1536)  # 2.25 MP: 3 begun
        assert math.ceil(1536 * 1536 / MEGAPIXEL) == 3
        expected = price.first_mp + 2 * price.extra_mp + 2 * price.per_input_image
        assert await cost_of(http, sandbox, task) == expected

    async def test_per_input_image(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """A per-input-image surcharge is added once per reference image."""
        profile = load_model_profile("openai:4@1")
        table = profile.price.table["medium"]
        assert isinstance(table, dict)
        task = model_task("openai:4@1", (REF, REF, REF), quality="medium")
        assert await cost_of(http, sandbox, task) == table["1024x1024"] + 3 * profile.price.per_input_image

    async def test_the_seed_price_is_unchanged(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """GPT Image 1 Mini at medium 1024x1024 still costs 0.011, and auto is billed as high."""
        assert await cost_of(http, sandbox, inference()) == Decimal("0.011")
        unset = inference(providerSettings={"openai": {"background": "opaque"}})
        assert await cost_of(http, sandbox, unset) == Decimal("0.036")


class TestTokenBilling:
    async def test_metered_cost_is_below_the_estimate_and_reproducible(self, http: httpx.AsyncClient) -> None:
        """A token-billed image costs a five-decimal amount below the estimate, the same for the same task
        in any sandbox; the images of one task are metered one by one."""
        profile = load_model_profile("openai:gpt-image@2")
        task = model_task("openai:gpt-image@2", quality="high", number_results=3)
        estimate = profile.image_price(default_request("openai:gpt-image@2", quality="high"))
        runs = []
        for _ in range(2):
            async with running_sandbox(SandboxSettings()) as sb:
                items = (await send(http, sb, task)).json()["data"]
                runs.append([Decimal(str(item["cost"])) for item in items])
                assert Decimal(str(sb.billing()["total_usd"])) == sum(runs[-1])
        assert runs[0] == runs[1]
        assert all(estimate * Decimal("0.7") <= cost < estimate for cost in runs[0])
        assert all(cost == cost.quantize(Decimal("0.00001")) for cost in runs[0])
        assert len(set(runs[0])) > 1

    async def test_charges_list_each_metered_image(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """GET /sandbox/charges shows what each image of a metered task cost."""
        task = model_task("openai:gpt-image@2", number_results=2)
        items = (await send(http, sandbox, task)).json()["data"]
        charges = (await http.get(f"{sandbox.base_url}/sandbox/charges")).json()["charges"]
        assert [image["cost_usd"] for image in charges[0]["images"]] == [item["cost"] for item in items]


class TestDuplicates:
    async def test_different_options_are_different_prompts(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """Two charges differing only in an option (the seed) are not duplicate prompts."""
        for seed in (1, 2, 2):
            assert (
                await send(http, sandbox, {**model_task("runware:400@1"), "seed": seed})
            ).status_code == 200
        assert sandbox.billing()["duplicate_prompts"] == 1


async def test_unknown_model_is_invalid_model(sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
    """A model id outside the catalog is invalidModel, as the real API answers a bad AIR."""
    task = inference(model="acme:1@1", taskUUID=str(uuid.uuid4()))
    assert await refusal(http, sandbox, task) == ("invalidModel", "model")
