"""Runware's official Python SDK (REST transport) works against the sandbox, both delivery methods."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image
from runware import Runware

from pipeline.sandbox import SandboxHandle, SandboxSettings, running_sandbox

pytestmark = pytest.mark.anyio

KEY = "sdk-test-key"


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with running_sandbox(SandboxSettings(api_key=KEY)) as sb:
        yield sb


def params(**extra: object) -> dict[str, object]:
    return {
        "taskType": "imageInference",
        "model": "openai:1@2",
        "positivePrompt": "a lighthouse on a cliff at dusk, watercolour",
        "width": 1536,
        "height": 1024,
        "numberResults": 2,
        "outputFormat": "PNG",
        "includeCost": True,
        "providerSettings": {"openai": {"quality": "low", "background": "opaque"}},
        **extra,
    }


def png_data_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class TestOfficialSdk:
    @pytest.mark.parametrize("delivery", ["sync", "async"])
    async def test_sdk_generates_images(self, delivery: str, sandbox: SandboxHandle) -> None:
        """The SDK's run() returns the images, with cost, over both delivery methods."""
        async with Runware(api_key=KEY, transport="rest", http_base_url=sandbox.url, max_retries=0) as sdk:
            results = await sdk.run(params(deliveryMethod=delivery))
        assert len(results) == 2
        assert {r["cost"] for r in results} == {0.006}
        async with httpx.AsyncClient() as http:
            image = await http.get(results[0]["imageURL"])
        assert Image.open(io.BytesIO(image.content)).size == (1536, 1024)
        assert sandbox.billing()["images"] == 2

    async def test_sdk_upload_then_reference(self, sandbox: SandboxHandle) -> None:
        """An image uploaded through the SDK is accepted as a reference image by its UUID."""
        async with Runware(api_key=KEY, transport="rest", http_base_url=sandbox.url, max_retries=0) as sdk:
            uploaded = await sdk.image_upload({"image": png_data_uri()})
            image_uuid = uploaded[0]["imageUUID"]
            results = await sdk.run(
                params(numberResults=1, deliveryMethod="sync", inputs={"referenceImages": [image_uuid]})
            )
        assert results[0]["imageUUID"]

    async def test_sdk_runs_another_provider(self, sandbox: SandboxHandle) -> None:
        """A FLUX.2 [pro] task with its own options (seed, providerSettings.bfl) goes through the SDK,
        billed per megapixel."""
        task = {
            "taskType": "imageInference",
            "model": "bfl:5@1",
            "positivePrompt": "a paper boat on a puddle",
            "width": 1024,
            "height": 768,
            "seed": 42,
            "includeCost": True,
            "providerSettings": {"bfl": {"safetyTolerance": 2}},
        }
        async with Runware(api_key=KEY, transport="rest", http_base_url=sandbox.url, max_retries=0) as sdk:
            results = await sdk.run(task)
        assert [r["cost"] for r in results] == [0.03]  # under 1 MP: the first megapixel's price

    async def test_sdk_sees_a_bad_key(self, sandbox: SandboxHandle) -> None:
        """A wrong key is refused and the SDK raises its auth error."""
        async with Runware(
            api_key="wrong", transport="rest", http_base_url=sandbox.url, max_retries=0
        ) as sdk:
            with pytest.raises(Exception, match=r"(?i)api key|auth") as info:
                await sdk.run(params(deliveryMethod="sync"))
        assert getattr(info.value, "status_code", None) == 401
