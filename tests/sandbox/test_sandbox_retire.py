"""The sandbox plays a provider that retired a model: named at start-up, or past its shutdown date."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from helpers.sandbox_tasks import inference, model_task
from pydantic import ValidationError

from pipeline.errors import ModelRefusedError, ModelUnavailableError
from pipeline.runware.client import RunwareClient
from pipeline.sandbox import SandboxHandle, SandboxSettings, running_sandbox

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer k"}
SHUTDOWN = dt.date(2026, 12, 1)  # openai:1@2's shutdown date in its profile


async def send(http: httpx.AsyncClient, sb: SandboxHandle, task: dict[str, Any]) -> httpx.Response:
    return await http.post(sb.url, json=[task], headers=AUTH)


async def is_unknown_task(http: httpx.AsyncClient, sb: SandboxHandle, task_uuid: str) -> bool:
    poll = [{"taskType": "getResponse", "taskUUID": task_uuid}]
    answer = (await http.post(sb.url, json=poll, headers=AUTH)).json()
    return bool(answer["errors"][0]["code"] == "taskNotFound")


class TestRetireOneModel:
    @pytest.mark.parametrize(
        ("code", "status"), [("invalidModel", 400), ("modelNotFound", 404), ("modelUnavailable", 503)]
    )
    async def test_refused_in_the_real_shape_and_not_charged(
        self, code: str, status: int, http: httpx.AsyncClient
    ) -> None:
        """A retired model is answered with its code and HTTP status in Runware's error envelope, naming
        the model parameter and the task; nothing is charged or kept."""
        async with running_sandbox(SandboxSettings(retire={"openai:1@2": code})) as sb:
            task = inference()
            response = await send(http, sb, task)
            assert response.status_code == status
            body = response.json()
            assert body == {
                "errors": [
                    {
                        "code": code,
                        "message": body["errors"][0]["message"],
                        "parameter": "model",
                        "taskType": "imageInference",
                        "taskUUID": task["taskUUID"],
                    }
                ]
            }
            assert sb.billing()["tasks"] == 0
            assert await is_unknown_task(http, sb, task["taskUUID"])

    async def test_invalid_model_says_what_the_real_api_says(self, http: httpx.AsyncClient) -> None:
        """invalidModel carries the real API's message for a model it does not know."""
        async with running_sandbox(SandboxSettings(retire={"openai:1@2": "invalidModel"})) as sb:
            message = (await send(http, sb, inference())).json()["errors"][0]["message"]
        assert message.startswith("Invalid value for model parameter.")

    async def test_refused_before_validation(self, http: httpx.AsyncClient) -> None:
        """A provider that dropped a model no longer knows its parameters: the model is what is refused."""
        async with running_sandbox(SandboxSettings(retire={"openai:1@2": "modelNotFound"})) as sb:
            response = await send(http, sb, inference(width=7, seed=1))
        assert response.status_code == 404
        assert response.json()["errors"][0]["parameter"] == "model"

    async def test_other_models_are_served(self, http: httpx.AsyncClient) -> None:
        """In one request, the retired model's task is refused and another model's task is served."""
        async with running_sandbox(SandboxSettings(retire={"openai:1@2": "invalidModel"})) as sb:
            retired, live = inference(), model_task("openai:gpt-image@2")
            response = await http.post(sb.url, json=[retired, live], headers=AUTH)
            assert response.status_code == 200
            body = response.json()
            assert [item["taskUUID"] for item in body["data"]] == [live["taskUUID"]]
            assert [(e["code"], e["taskUUID"]) for e in body["errors"]] == [
                ("invalidModel", retired["taskUUID"])
            ]
            assert sb.billing()["tasks"] == 1

    @pytest.mark.parametrize(
        ("code", "error"),
        [
            ("invalidModel", ModelRefusedError),
            ("modelNotFound", ModelRefusedError),
            ("modelUnavailable", ModelUnavailableError),
        ],
    )
    async def test_the_pipelines_client_reads_a_model_refusal(
        self, code: str, error: type[Exception], http: httpx.AsyncClient
    ) -> None:
        """The project's client reads each answer as a refusal of the model, not of the row."""
        async with running_sandbox(SandboxSettings(retire={"openai:1@2": code})) as sb:
            with pytest.raises(error) as info:
                await RunwareClient(http, sb.url, "k").infer(inference())
        assert getattr(info.value, "code", None) == code


class TestLifecycle:
    async def test_past_shutdown_is_refused_live_models_served(self, http: httpx.AsyncClient) -> None:
        """With --lifecycle on openai:1@2's shutdown day, it is invalidModel; GPT Image 2 is served."""
        async with running_sandbox(SandboxSettings(lifecycle=True, today=SHUTDOWN)) as sb:
            retired = await send(http, sb, inference())
            live = await send(http, sb, model_task("openai:gpt-image@2"))
        assert retired.status_code == 400
        assert retired.json()["errors"][0]["code"] == "invalidModel"
        assert live.status_code == 200

    async def test_the_day_before_shutdown_is_served(self, http: httpx.AsyncClient) -> None:
        """The model still answers until its shutdown date."""
        eve = SHUTDOWN - dt.timedelta(days=1)
        async with running_sandbox(SandboxSettings(lifecycle=True, today=eve)) as sb:
            assert (await send(http, sb, inference())).status_code == 200

    async def test_default_serves_every_model(self, http: httpx.AsyncClient) -> None:
        """Without --lifecycle, a model long past its shutdown is still served (tests and demos work)."""
        async with running_sandbox(SandboxSettings(today=dt.date(2030, 1, 1))) as sb:
            assert (await send(http, sb, inference(model="openai:1@1"))).status_code == 200


class TestSettings:
    def test_bad_code_or_model_is_refused(self) -> None:
        """An unknown code, or a model outside the catalog, is a settings error naming it."""
        with pytest.raises(ValidationError, match="modelGone"):
            SandboxSettings(retire={"openai:1@2": "modelGone"})
        with pytest.raises(ValidationError, match="acme:1@1"):
            SandboxSettings(retire={"acme:1@1": "invalidModel"})

    async def test_changed_while_running(self, http: httpx.AsyncClient) -> None:
        """POST /sandbox/faults retires a model and turns the lifecycle on; GET shows it (without the key)."""
        async with running_sandbox(SandboxSettings(api_key="secret")) as sb:
            admin = f"{sb.base_url}/sandbox/faults"
            changes = {"retire": {"openai:1@1": "modelNotFound"}, "lifecycle": True, "today": "2026-12-01"}
            assert (await http.post(admin, json=changes)).status_code == 200
            shown = (await http.get(admin)).json()
            headers = {"Authorization": "Bearer secret"}
            gone = await http.post(sb.url, json=[inference(model="openai:1@1")], headers=headers)
            retired = await http.post(sb.url, json=[inference()], headers=headers)
            bad = await http.post(admin, json={"retire": {"openai:1@2": "teapot"}})
        assert {key: shown[key] for key in changes} == changes
        assert "api_key" not in shown
        assert (gone.status_code, retired.status_code) == (404, 400)
        assert bad.status_code == 400
        assert "teapot" in bad.json()["error"]
