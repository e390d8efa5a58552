"""The Runware client: tasks exactly as the wire examples, answers and errors read and classified."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from helpers.paths import DATA

from pipeline.config.profiles import load_model_profile
from pipeline.errors import (
    FatalProviderError,
    ModelRefusedError,
    ModelUnavailableError,
    PermanentProviderError,
    TransientError,
    TransientProviderError,
)
from pipeline.rows import ImageRequest
from pipeline.runware.client import (
    InDoubtError,
    RunwareClient,
    TaskConflictError,
    TaskUnknownError,
    classify,
    inference_task,
    transport_error,
)
from pipeline.runware.wire import parse_retry_after, read_answer, task_status

KEY = "sk-test-SECRET-0123456789"
CASES = ["jigsaw-collage", "mask-fusion", "matchbox-label", "salt-flats"]
PROFILE = load_model_profile("openai:1@2")


def _example(case: str) -> tuple[dict[str, Any], dict[str, Any]]:
    request = json.loads((DATA / f"{case}.request.json").read_text())[0]
    response = json.loads((DATA / f"{case}.response.json").read_text())
    return request, response


def _request_of(task: dict[str, Any]) -> ImageRequest:
    settings = task["providerSettings"]["openai"]
    return ImageRequest(
        model=task["model"],
        prompt=task["positivePrompt"],
        width=task["width"],
        height=task["height"],
        quality=settings["quality"],
        background=settings["background"],
        output_format="JPG",
        number_results=1,
        reference_images=tuple(task.get("inputs", {}).get("referenceImages", [])),
    )


Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler) -> tuple[RunwareClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RunwareClient(http, "https://api.example/v1", KEY), http


class TestTaskShape:
    @pytest.mark.parametrize("case", CASES)
    def test_matches_the_wire_examples(self, case: str) -> None:
        """Every field of the real request is built exactly, plus the pipeline's fixed fields."""
        expected, _ = _example(case)
        req = _request_of(expected)
        task = inference_task(req, expected["taskUUID"], req.reference_images, profile=PROFILE).wire()
        fixed = {"numberResults": 1, "outputType": "URL", "outputFormat": "JPG", "includeCost": True}
        assert task == {**expected, **fixed}

    def test_no_inputs_without_references_and_async_delivery(self) -> None:
        """inputs is omitted when empty; async delivery adds deliveryMethod."""
        expected, _ = _example("salt-flats")
        task = inference_task(_request_of(expected), "u", (), profile=PROFILE, delivery="async").wire()
        assert "inputs" not in task
        assert task["deliveryMethod"] == "async"


class TestAnswers:
    @pytest.mark.anyio
    @pytest.mark.parametrize("case", CASES)
    async def test_reads_images_and_cost(self, case: str) -> None:
        """The example response yields its imageUUID, URL and cost; auth is a Bearer header."""
        request, response = _example(case)
        seen: list[httpx.Request] = []

        def handler(r: httpx.Request) -> httpx.Response:
            seen.append(r)
            return httpx.Response(200, json=response)

        client, http = _client(handler)
        async with http:
            images = await client.infer(request)
        item = response["data"][0]
        assert [(i.image_uuid, i.image_url, i.cost_usd) for i in images] == [
            (item["imageUUID"], item["imageURL"], Decimal(str(item["cost"])))  # exact: the answer's text
        ]
        assert seen[0].headers["authorization"] == f"Bearer {KEY}"
        assert json.loads(seen[0].content) == [request]

    @pytest.mark.parametrize(
        ("status", "code", "error"),
        [
            (400, "invalidParameter", PermanentProviderError),
            (401, "invalidApiKey", FatalProviderError),
            (402, "insufficientCredits", FatalProviderError),
            (403, "forbidden", FatalProviderError),
            (429, "tooManyRequests", TransientProviderError),
            (503, "serviceUnavailable", TransientProviderError),
            (504, "timeout", TransientProviderError),
            (500, "internalError", InDoubtError),
            (400, "conflictTaskUUID", TaskConflictError),
        ],
    )
    def test_error_envelope_classified(self, status: int, code: str, error: type[Exception]) -> None:
        """HTTP status and error code map to transient, permanent or fatal."""
        body = json.dumps({"errors": [{"code": code, "message": "m", "taskUUID": "t"}]}).encode()
        with pytest.raises(error) as info:
            read_answer(status, {}, body)
        assert info.value.code == code  # type: ignore[attr-defined]

    def test_refusals_are_not_in_doubt(self) -> None:
        """429/503/504 say the task did not run: a new attempt, no reconciliation."""
        for status in (429, 503, 504):
            with pytest.raises(TransientProviderError) as info:
                read_answer(status, {}, b'{"errors":[{"code":"x","message":"busy"}]}')
            assert not isinstance(info.value, InDoubtError)

    def test_error_item_in_data(self) -> None:
        """A data item with status "error" is the task's error."""
        items = [
            {"taskUUID": "t", "status": "error", "error": {"code": "contentModeration", "message": "no"}}
        ]
        status = task_status(items, "t", 1)
        assert status.state == "error"
        assert isinstance(status.error, PermanentProviderError)
        assert status.error.code == "contentModeration"

    def test_retry_after_header(self) -> None:
        """Retry-After is carried on the error (seconds or HTTP date)."""
        with pytest.raises(TransientProviderError) as info:
            read_answer(429, {"retry-after": "3"}, b'{"errors":[{"code":"x","message":"m"}]}')
        assert info.value.retry_after == 3.0
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
        assert parse_retry_after("soon") is None

    def test_malformed_body_is_in_doubt(self) -> None:
        """A 200 whose body is not JSON leaves the task in doubt."""
        with pytest.raises(InDoubtError):
            read_answer(200, {}, b"{not json")

    def test_get_response_states(self) -> None:
        """processing, success with all images, unknown when the task is not listed."""
        ok = {"taskUUID": "t", "imageUUID": "i", "imageURL": "u", "cost": 0.011, "status": "success"}
        assert task_status([{"taskUUID": "t", "status": "processing"}], "t", 1).state == "processing"
        assert task_status([ok], "t", 1).state == "success"
        assert task_status([ok], "t", 2).state == "processing"
        assert task_status([], "t", 1).state == "unknown"


class TestTransport:
    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "exc",
        [
            httpx.ReadTimeout("slow"),
            httpx.WriteTimeout("slow"),
            httpx.RemoteProtocolError("dropped"),
            httpx.ReadError("reset"),
            httpx.WriteError("broken"),
        ],
    )
    async def test_transport_failures_are_in_doubt(self, exc: httpx.HTTPError) -> None:
        """Timeouts and dropped connections leave the task in doubt (transient)."""

        def handler(r: httpx.Request) -> httpx.Response:
            raise exc

        client, http = _client(handler)
        async with http:
            with pytest.raises(InDoubtError) as info:
                await client.infer({"taskUUID": "t"})
        assert isinstance(info.value, TransientError)

    @pytest.mark.anyio
    @pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")])
    async def test_never_sent_is_a_plain_refusal(self, exc: httpx.HTTPError) -> None:
        """No connection, so no request: transient, and nothing in doubt."""

        def handler(r: httpx.Request) -> httpx.Response:
            raise exc

        client, http = _client(handler)
        async with http:
            with pytest.raises(TransientProviderError) as info:
                await client.infer({"taskUUID": "t"})
        assert not isinstance(info.value, InDoubtError)

    def test_every_httpx_error_maps(self) -> None:
        """Every httpx transport error class maps to a transient error."""
        classes = [c for c in vars(httpx).values() if isinstance(c, type) and issubclass(c, httpx.HTTPError)]
        for cls in classes:
            try:
                exc = cls("x")
            except TypeError:
                continue
            assert isinstance(transport_error(exc), TransientProviderError)

    @pytest.mark.anyio
    async def test_api_key_never_in_errors(self) -> None:
        """A server echoing the key in its error message does not leak it."""

        def handler(r: httpx.Request) -> httpx.Response:
            return httpx.Response(401, json={"errors": [{"code": "invalidApiKey", "message": f"bad {KEY}"}]})

        client, http = _client(handler)
        async with http:
            with pytest.raises(FatalProviderError) as info:
                await client.infer({"taskUUID": "t"})
        assert KEY not in str(info.value)
        assert KEY not in repr(info.value.args)

    @pytest.mark.anyio
    async def test_upload_returns_image_uuid(self) -> None:
        """imageUpload sends a data URI and returns the imageUUID."""

        def handler(r: httpx.Request) -> httpx.Response:
            task = json.loads(r.content)[0]
            assert task["taskType"] == "imageUpload"
            assert task["image"].startswith("data:image/png;base64,")
            return httpx.Response(200, json={"data": [{"taskUUID": task["taskUUID"], "imageUUID": "img-1"}]})

        client, http = _client(handler)
        async with http:
            assert await client.upload("data:image/png;base64,AAAA") == "img-1"


INFER, POLL = "imageInference", "getResponse"


class TestModelRefusals:
    @pytest.mark.parametrize(
        ("status", "code", "parameter", "task_type", "error"),
        [
            (400, "invalidModel", "model", INFER, ModelRefusedError),
            (400, "invalidModel", None, None, ModelRefusedError),
            (404, "modelNotFound", "model", INFER, ModelRefusedError),
            (404, "unknownModel", None, INFER, ModelRefusedError),
            (400, "modelDisabled", None, INFER, ModelRefusedError),
            (410, "modelRetired", None, INFER, ModelRefusedError),
            (400, "invalidParameter", "model", INFER, ModelRefusedError),  # names the model parameter
            (404, None, None, INFER, ModelRefusedError),  # any 404 to imageInference
            (404, "notFound", None, INFER, ModelRefusedError),
            (404, "taskNotFound", None, INFER, ModelRefusedError),
            (404, "imageNotFound", "inputs.referenceImages", INFER, PermanentProviderError),  # a reference's
            (503, "modelUnavailable", "model", INFER, ModelUnavailableError),
            (503, "modelUnavailable", None, None, ModelUnavailableError),
            (503, "modelNotReady", None, INFER, ModelUnavailableError),
            (503, "serviceUnavailable", "model", INFER, ModelUnavailableError),  # 503 naming model
            (400, "unsupportedArchitectureCFGScale", "CFGScale", INFER, PermanentProviderError),
            (400, "unsupportedModelFeature", "CFGScale", INFER, PermanentProviderError),
            (400, "invalidParameter", "width", INFER, PermanentProviderError),
            (503, "serviceUnavailable", None, INFER, TransientProviderError),
            (404, "taskNotFound", None, POLL, TaskUnknownError),
            (404, None, None, POLL, TaskUnknownError),
            (400, "taskNotFound", None, POLL, TaskUnknownError),
            (401, "invalidApiKey", None, INFER, FatalProviderError),
        ],
    )
    def test_classified_by_status_code_parameter_and_task(
        self, status: int, code: str | None, parameter: str | None, task_type: str | None, error: type
    ) -> None:
        """Which answers refuse the model itself (for good, or for now), and which are about the row."""
        exc = classify(status, code, "m", parameter=parameter, task_type=task_type)
        assert type(exc) is error

    def test_a_404_to_image_inference_is_never_an_unknown_task(self) -> None:
        """A 404 answering imageInference (whatever its code) is about the model: never resubmitted."""
        for code in (None, "taskNotFound", "notFound", "unknownTaskUUID", "modelNotFound"):
            exc = classify(404, code, "m", task_type=INFER)
            assert isinstance(exc, ModelRefusedError)
            assert not isinstance(exc, TaskUnknownError)

    def test_read_answer_uses_the_task_type_sent(self) -> None:
        """An error envelope without a taskType is judged by the task that was sent."""
        body = b'{"errors":[{"code":"notFound","message":"gone","taskUUID":"t"}]}'
        with pytest.raises(ModelRefusedError):
            read_answer(404, {}, body, task_type=INFER)
        with pytest.raises(TaskUnknownError):
            read_answer(404, {}, body, task_type=POLL)
        with pytest.raises(ModelRefusedError):  # not even an envelope: a 404 to imageInference
            read_answer(404, {}, b"<html>not found</html>", task_type=INFER)

    @pytest.mark.anyio
    async def test_get_response_reporting_a_refused_model_is_the_tasks_verdict(self) -> None:
        """getResponse answered 404 modelNotFound for the task: its verdict, not "ask again"."""

        def handler(r: httpx.Request) -> httpx.Response:
            err = {"code": "modelNotFound", "message": "gone", "taskUUID": "t", "taskType": INFER}
            return httpx.Response(404, json={"errors": [err]})

        client, http = _client(handler)
        async with http:
            status = await client.get_response("t", expected=1)
        assert status.state == "error"
        assert isinstance(status.error, ModelRefusedError)

    @pytest.mark.anyio
    @pytest.mark.parametrize("named", [None, INFER])
    async def test_get_response_404_without_model_is_an_unknown_task(self, named: str | None) -> None:
        """getResponse answered 404 taskNotFound (even naming the polled imageInference task): the task
        is unknown (the caller resubmits it), not a refused model."""

        def handler(r: httpx.Request) -> httpx.Response:
            err = {"code": "taskNotFound", "message": "no such task", "taskUUID": "t", "taskType": named}
            return httpx.Response(404, json={"errors": [err]})

        client, http = _client(handler)
        async with http:
            status = await client.get_response("t", expected=1)
        assert status.state == "unknown"
