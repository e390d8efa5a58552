"""The sandbox speaks Runware's wire format: the real examples, getResponse, images, billing."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from pipeline.sandbox import SandboxHandle, SandboxSettings, running_sandbox

DATA = Path(__file__).parent / "data" / "runware"
CASES = sorted(p.name.removesuffix(".request.json") for p in DATA.glob("*.request.json"))
AUTH = {"Authorization": "Bearer test-key"}

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with running_sandbox(SandboxSettings()) as sb:
        yield sb


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def inference(**overrides: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "openai:1@2",
        "positivePrompt": "a red bicycle leaning on a blue wall",
        "width": 1024,
        "height": 1024,
        "numberResults": 1,
        "outputType": "URL",
        "outputFormat": "JPG",
        "includeCost": True,
        "providerSettings": {"openai": {"quality": "medium", "background": "opaque"}},
    }
    task.update(overrides)
    return task


class TestRealExamples:
    @pytest.mark.parametrize("case", CASES)
    async def test_example_is_answered_in_its_shape_with_its_cost(
        self, case: str, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """Each real request is accepted as it is and answered like its real response, same cost."""
        request = json.loads((DATA / f"{case}.request.json").read_text())
        expected = json.loads((DATA / f"{case}.response.json").read_text())
        response = await http.post(sandbox.url, json=request, headers=AUTH)
        assert response.status_code == 200
        body = response.json()
        assert body.keys() == expected.keys()
        got, want = body["data"][0], expected["data"][0]
        assert got.keys() == want.keys()
        assert got["taskUUID"] == want["taskUUID"]
        assert got["cost"] == want["cost"]
        assert got["imageURL"].endswith(".jpg")
        image = await http.get(got["imageURL"])
        assert image.status_code == 200
        decoded = Image.open(io.BytesIO(image.content))
        assert decoded.format == "JPEG"
        assert decoded.size == (request[0]["width"], request[0]["height"])

    async def test_billing_totals_the_examples_exactly(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """Billing counts every example once, summing to the real costs to the cent."""
        for case in CASES:
            request = json.loads((DATA / f"{case}.request.json").read_text())
            assert (await http.post(sandbox.url, json=request, headers=AUTH)).status_code == 200
        billing = (await http.get(f"{sandbox.base_url}/sandbox/billing")).json()
        assert billing["tasks"] == 4
        assert billing["images"] == 4
        assert billing["total_usd"] == 0.052
        assert billing["duplicate_tasks"] == 0
        assert billing["duplicate_prompts"] == 0


class TestGetResponse:
    async def test_completed_task_is_retrievable(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """getResponse returns the finished task's images with status success."""
        task = inference()
        first = (await http.post(sandbox.url, json=[task], headers=AUTH)).json()["data"][0]
        poll = [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]
        items = (await http.post(sandbox.url, json=poll, headers=AUTH)).json()["data"]
        assert [item["status"] for item in items] == ["success"]
        assert items[0]["imageUUID"] == first["imageUUID"]
        assert items[0]["cost"] == 0.011

    async def test_unknown_task_is_an_error(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """getResponse for a taskUUID never submitted answers an error naming it."""
        poll = [{"taskType": "getResponse", "taskUUID": str(uuid.uuid4())}]
        response = await http.post(sandbox.url, json=poll, headers=AUTH)
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "taskNotFound"
