"""The sandbox speaks Runware's wire format: the real examples, getResponse, images, billing."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from helpers.paths import DATA as TEST_DATA
from helpers.sandbox_tasks import inference
from PIL import Image

from pipeline.sandbox import SandboxHandle, SandboxSettings, running_sandbox

DATA = TEST_DATA / "runware"
CASES = sorted(p.name.removesuffix(".request.json") for p in DATA.glob("*.request.json"))
AUTH = {"Authorization": "Bearer test-key"}

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with running_sandbox(SandboxSettings()) as sb:
        yield sb


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


def png_bytes(size: tuple[int, int] = (40, 30), colour: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


class TestAuth:
    async def test_missing_key_is_401(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """No key at all is refused with invalidApiKey."""
        response = await http.post(sandbox.url, json=[inference()])
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "invalidApiKey"

    async def test_configured_key_only(self, http: httpx.AsyncClient) -> None:
        """With a configured key, another key is refused and the key itself is accepted."""
        async with running_sandbox(SandboxSettings(api_key="s3cret")) as sb:
            wrong = await http.post(sb.url, json=[inference()], headers={"Authorization": "Bearer nope"})
            right = await http.post(sb.url, json=[inference()], headers={"Authorization": "Bearer s3cret"})
        assert wrong.status_code == 401
        assert "s3cret" not in wrong.text
        assert right.status_code == 200

    async def test_authentication_task_first(self, http: httpx.AsyncClient) -> None:
        """A leading authentication task authenticates the request and is answered too."""
        async with running_sandbox(SandboxSettings(api_key="s3cret")) as sb:
            task = inference()
            tasks = [{"taskType": "authentication", "apiKey": "s3cret"}, task]
            response = await http.post(sb.url, json=tasks)
            refused = await http.post(
                sb.url, json=[{"taskType": "authentication", "apiKey": "x"}, inference()]
            )
        assert response.status_code == 200
        kinds = [item["taskType"] for item in response.json()["data"]]
        assert kinds == ["authentication", "imageInference"]
        assert refused.status_code == 401


class TestValidation:
    @pytest.mark.parametrize(
        ("overrides", "parameter", "code"),
        [
            ({"negativePrompt": "blurry"}, "negativePrompt", "unsupportedParameter"),
            ({"seed": 42}, "seed", "unsupportedParameter"),
            ({"width": 512, "height": 512}, "width", "invalidSize"),
            ({"model": "openai:9@9"}, "model", "invalidModel"),
            ({"positivePrompt": ""}, "positivePrompt", "invalidPositivePrompt"),
            ({"positivePrompt": "x" * 32001}, "positivePrompt", "invalidPositivePrompt"),
            ({"numberResults": 11}, "numberResults", "invalidNumberResults"),
            ({"outputType": "file"}, "outputType", "invalidOutputType"),
            ({"outputFormat": "GIF"}, "outputFormat", "invalidOutputFormat"),
            ({"outputQuality": 5}, "outputQuality", "invalidOutputQuality"),
            ({"taskUUID": "not-a-uuid"}, "taskUUID", "invalidTaskUUID"),
            ({"deliveryMethod": "carrier-pigeon"}, "deliveryMethod", "invalidDeliveryMethod"),
            (
                {"providerSettings": {"openai": {"quality": "ultra"}}},
                "providerSettings.openai.quality",
                "invalidQuality",
            ),
            (
                {"providerSettings": {"openai": {"background": "plaid"}}},
                "providerSettings.openai.background",
                "invalidBackground",
            ),
            (
                {"inputs": {"referenceImages": ["https://example.com/a.jpg"] * 17}},
                "inputs.referenceImages",
                "invalidReferenceImages",
            ),
            (
                {"inputs": {"referenceImages": [str(uuid.uuid4())]}},
                "inputs.referenceImages",
                "invalidReferenceImages",
            ),
        ],
    )
    async def test_bad_parameter_is_400_naming_it(
        self,
        overrides: dict[str, Any],
        parameter: str,
        code: str,
        sandbox: SandboxHandle,
        http: httpx.AsyncClient,
    ) -> None:
        """A parameter the model does not accept is a 400 naming it; nothing is charged."""
        response = await http.post(sandbox.url, json=[inference(**overrides)], headers=AUTH)
        assert response.status_code == 400
        error = response.json()["errors"][0]
        assert (error["parameter"], error["code"]) == (parameter, code)
        assert error["taskType"] == "imageInference"
        assert sandbox.billing()["tasks"] == 0

    async def test_body_not_a_task_array(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """A body that is not a JSON array of tasks is a 400."""
        for content in (b"{not json", b'{"taskType": "imageInference"}', b"[]"):
            response = await http.post(sandbox.url, content=content, headers=AUTH)
            assert response.status_code == 400

    async def test_reused_task_uuid_conflicts(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """Re-sending a taskUUID is answered conflictTaskUUID and is not charged again."""
        task = inference()
        assert (await http.post(sandbox.url, json=[task], headers=AUTH)).status_code == 200
        again = await http.post(sandbox.url, json=[task], headers=AUTH)
        assert again.status_code == 400
        assert again.json()["errors"][0] == {
            "code": "conflictTaskUUID",
            "message": again.json()["errors"][0]["message"],
            "parameter": "taskUUID",
            "taskType": "imageInference",
            "taskUUID": task["taskUUID"],
        }
        assert sandbox.billing()["tasks"] == 1

    async def test_several_tasks_each_answered(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """Several tasks in one request: each gets its own result or its own error."""
        good, bad, other = inference(), inference(seed=1), inference(numberResults=2)
        response = await http.post(sandbox.url, json=[good, bad, other], headers=AUTH)
        assert response.status_code == 200
        body = response.json()
        assert [item["taskUUID"] for item in body["data"]] == [good["taskUUID"], *[other["taskUUID"]] * 2]
        assert [error["taskUUID"] for error in body["errors"]] == [bad["taskUUID"]]
        assert sandbox.billing()["images"] == 3


class TestImages:
    @pytest.mark.parametrize(
        ("output_format", "pil_format"), [("JPG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WEBP")]
    )
    async def test_formats_and_output_types(
        self, output_format: str, pil_format: str, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """URL, base64Data and dataURI carry the same decodable image of the requested size and format."""
        uuid_ = str(uuid.uuid4())
        blobs = []
        for output_type in ("URL", "base64Data", "dataURI"):
            task = inference(outputFormat=output_format, outputType=output_type, width=1536, height=1024)
            task["taskUUID"] = uuid_ if output_type == "URL" else str(uuid.uuid4())
            item = (await http.post(sandbox.url, json=[task], headers=AUTH)).json()["data"][0]
            if output_type == "URL":
                blobs.append((await http.get(item["imageURL"])).content)
            elif output_type == "base64Data":
                blobs.append(base64.b64decode(item["imageBase64Data"]))
            else:
                assert item["imageDataURI"].startswith(f"data:image/{pil_format.lower()};base64,")
                blobs.append(base64.b64decode(item["imageDataURI"].partition(",")[2]))
        for blob in blobs:
            decoded = Image.open(io.BytesIO(blob))
            assert (decoded.format, decoded.size) == (pil_format, (1536, 1024))

    async def test_image_is_deterministic_for_a_task(self, http: httpx.AsyncClient) -> None:
        """The same taskUUID and parameters give the same imageUUID and the same bytes, in any sandbox."""
        task = inference()
        blobs = []
        for _ in range(2):
            async with running_sandbox(SandboxSettings()) as sb:
                item = (await http.post(sb.url, json=[task], headers=AUTH)).json()["data"][0]
                blobs.append((item["imageUUID"], (await http.get(item["imageURL"])).content))
        assert blobs[0] == blobs[1]

    async def test_prompt_colours_the_image(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """Different prompts give different colour fields."""
        colours = []
        for prompt in ("a cat", "a dog"):
            task = inference(positivePrompt=prompt, outputFormat="PNG")
            item = (await http.post(sandbox.url, json=[task], headers=AUTH)).json()["data"][0]
            image = Image.open(io.BytesIO((await http.get(item["imageURL"])).content)).convert("RGB")
            colours.append(image.getpixel((1020, 500)))
        assert colours[0] != colours[1]

    async def test_include_cost_false_omits_cost(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """includeCost false answers without cost (the charge is still billed)."""
        item = (await http.post(sandbox.url, json=[inference(includeCost=False)], headers=AUTH)).json()[
            "data"
        ][0]
        assert "cost" not in item
        assert sandbox.billing()["total_usd"] == 0.011

    async def test_unknown_image_is_404(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """An image URL the sandbox never returned is a 404."""
        assert (await http.get(f"{sandbox.base_url}/image/{uuid.uuid4()}.jpg")).status_code == 404


class TestUpload:
    @pytest.mark.parametrize("form", ["dataURI", "base64"])
    async def test_upload_gives_a_usable_reference(
        self, form: str, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """An uploaded image's imageUUID works as a reference image and shows as a thumbnail."""
        raw = base64.b64encode(png_bytes(colour=(0, 255, 0))).decode()
        image = f"data:image/png;base64,{raw}" if form == "dataURI" else raw
        upload = {"taskType": "imageUpload", "taskUUID": str(uuid.uuid4()), "image": image}
        item = (await http.post(sandbox.url, json=[upload], headers=AUTH)).json()["data"][0]
        assert item["taskType"] == "imageUpload"
        uploaded = await http.get(item["imageURL"])
        assert uploaded.content == png_bytes(colour=(0, 255, 0))
        task = inference(inputs={"referenceImages": [item["imageUUID"]]}, outputFormat="PNG")
        result = (await http.post(sandbox.url, json=[task], headers=AUTH)).json()["data"][0]
        rendered = Image.open(io.BytesIO((await http.get(result["imageURL"])).content)).convert("RGB")
        assert rendered.getpixel((40, 1024 - 16 - 150)) == (0, 255, 0)  # the thumbnail, bottom left

    async def test_upload_url(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """A URL upload is answered with an imageUUID (the URL is not fetched)."""
        upload = {
            "taskType": "imageUpload",
            "taskUUID": str(uuid.uuid4()),
            "image": "https://example.com/x.png",
        }
        item = (await http.post(sandbox.url, json=[upload], headers=AUTH)).json()["data"][0]
        task = inference(inputs={"referenceImages": [item["imageUUID"]]})
        assert (await http.post(sandbox.url, json=[task], headers=AUTH)).status_code == 200

    async def test_upload_not_an_image(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """Bytes that are not an image are a 400 naming the image parameter."""
        upload = {
            "taskType": "imageUpload",
            "taskUUID": str(uuid.uuid4()),
            "image": "data:image/png;base64,aGVsbG8=",
        }
        response = await http.post(sandbox.url, json=[upload], headers=AUTH)
        assert response.status_code == 400
        assert response.json()["errors"][0]["parameter"] == "image"


class TestBilling:
    async def test_duplicate_prompts_are_reported(
        self, sandbox: SandboxHandle, http: httpx.AsyncClient
    ) -> None:
        """The same prompt and parameters charged twice (new taskUUIDs) shows as a duplicate charge."""
        for _ in range(3):
            assert (await http.post(sandbox.url, json=[inference()], headers=AUTH)).status_code == 200
        await http.post(sandbox.url, json=[inference(positivePrompt="another")], headers=AUTH)
        billing = (await http.get(f"{sandbox.base_url}/sandbox/billing")).json()
        assert billing["tasks"] == 4
        assert billing["duplicate_prompts"] == 2
        assert billing["duplicate_tasks"] == 0
        assert billing["total_usd"] == 0.044

    async def test_every_charge_is_listed(self, sandbox: SandboxHandle, http: httpx.AsyncClient) -> None:
        """GET /sandbox/charges lists each charged task with its images and their cost."""
        task = inference(numberResults=2, width=1536)
        items = (await http.post(sandbox.url, json=[task], headers=AUTH)).json()["data"]
        charges = (await http.get(f"{sandbox.base_url}/sandbox/charges")).json()["charges"]
        assert charges == [
            {
                "task_uuid": task["taskUUID"],
                "cost_usd": 0.03,
                "images": [{"image_uuid": item["imageUUID"], "cost_usd": 0.015} for item in items],
            }
        ]
