"""Faults on demand, over real HTTP: refusals, hangs, drops, malformed bodies, capacity, credit, latency."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import anyio
import httpx
import pytest
from helpers.sandbox_tasks import inference

from pipeline.sandbox import SandboxHandle, SandboxSettings, running_sandbox

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer k"}


async def poll(http: httpx.AsyncClient, sb: SandboxHandle, task_uuid: str) -> httpx.Response:
    return await http.post(sb.url, json=[{"taskType": "getResponse", "taskUUID": task_uuid}], headers=AUTH)


class TestRefusals:
    @pytest.mark.parametrize(
        ("kind", "status", "code"),
        [
            ("429", 429, "rateLimitExceeded"),
            ("500", 500, "internalError"),
            ("503", 503, "serviceUnavailable"),
            ("504", 504, "timeoutProvider"),
            ("403", 403, "forbidden"),
        ],
    )
    async def test_refused_request_is_not_charged(
        self, kind: str, status: int, code: str, http: httpx.AsyncClient
    ) -> None:
        """A refused request answers its status and code, charges nothing and leaves no task behind."""
        async with running_sandbox(SandboxSettings(faults={kind: 1.0})) as sb:
            task = inference()
            response = await http.post(sb.url, json=[task], headers=AUTH)
            assert response.status_code == status
            assert response.json()["errors"][0]["code"] == code
            assert "retry-after" not in response.headers
            assert (await poll(http, sb, task["taskUUID"])).json()["errors"][0]["code"] == "taskNotFound"
            assert sb.billing()["tasks"] == 0

    async def test_429_with_retry_after(self, http: httpx.AsyncClient) -> None:
        """The 429-retry-after fault sends a small Retry-After in seconds."""
        async with running_sandbox(SandboxSettings(faults={"429-retry-after": 1.0})) as sb:
            response = await http.post(sb.url, json=[inference()], headers=AUTH)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"

    async def test_get_response_is_never_faulted(self, http: httpx.AsyncClient) -> None:
        """Faults hit generation requests; polling still answers."""
        async with running_sandbox(SandboxSettings()) as sb:
            task = inference()
            assert (await http.post(sb.url, json=[task], headers=AUTH)).status_code == 200
            sb.configure(faults={"503": 1.0})
            items = (await poll(http, sb, task["taskUUID"])).json()["data"]
        assert items[0]["status"] == "success"


class TestAnswerLost:
    async def test_hang_holds_the_answer_but_charges_the_task(self, http: httpx.AsyncClient) -> None:
        """A hung request never answers; the task is charged and getResponse has its result."""
        async with running_sandbox(SandboxSettings(faults={"hang": 1.0})) as sb:
            task = inference()
            with pytest.raises(httpx.ReadTimeout):
                await http.post(sb.url, json=[task], headers=AUTH, timeout=0.5)
            sb.configure(faults={})
            items = (await poll(http, sb, task["taskUUID"])).json()["data"]
            assert items[0]["status"] == "success"
            assert sb.billing()["tasks"] == 1

    async def test_drop_closes_the_connection_mid_response(self, http: httpx.AsyncClient) -> None:
        """A dropped answer is a protocol error for the client; the task was charged and is retrievable."""
        async with running_sandbox(SandboxSettings(faults={"drop": 1.0})) as sb:
            task = inference()
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await http.post(sb.url, json=[task], headers=AUTH)
            assert (await poll(http, sb, task["taskUUID"])).json()["data"][0]["status"] == "success"
            assert sb.billing()["total_usd"] == 0.011

    async def test_malformed_body_is_not_json(self, http: httpx.AsyncClient) -> None:
        """A malformed answer is a 200 whose body does not parse; the task was charged."""
        async with running_sandbox(SandboxSettings(faults={"malformed": 1.0})) as sb:
            response = await http.post(sb.url, json=[inference()], headers=AUTH)
            assert response.status_code == 200
            with pytest.raises(json.JSONDecodeError):
                json.loads(response.content)
            assert sb.billing()["tasks"] == 1

    async def test_closing_with_hung_requests_does_not_hang(self, http: httpx.AsyncClient) -> None:
        """Leaving the sandbox while requests hang ends them (the client sees the connection drop)."""
        outcomes: list[BaseException] = []

        async def hung(url: str) -> None:
            try:
                await http.post(url, json=[inference()], headers=AUTH, timeout=60)
            except httpx.HTTPError as exc:
                outcomes.append(exc)

        async with (
            anyio.create_task_group() as group,
            running_sandbox(SandboxSettings(faults={"hang": 1.0})) as sb,
        ):
            for _ in range(3):
                group.start_soon(hung, sb.url)
            with anyio.fail_after(10):
                while sb.billing()["tasks"] < 3:  # noqa: ASYNC110 (state in another component)
                    await anyio.sleep(0.01)
        assert len(outcomes) == 3
        assert all(isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)) for exc in outcomes)


class TestLatencyAndQueue:
    async def test_task_completes_after_client_gives_up(self, http: httpx.AsyncClient) -> None:
        """A task keeps running when its client times out, is charged once done, and is retrievable."""
        async with running_sandbox(SandboxSettings(latency="300ms")) as sb:
            task = inference()
            with pytest.raises(httpx.ReadTimeout):
                await http.post(sb.url, json=[task], headers=AUTH, timeout=0.05)
            assert (await poll(http, sb, task["taskUUID"])).json()["data"][0]["status"] == "processing"
            assert sb.billing()["tasks"] == 0
            await anyio.sleep(0.4)
            assert (await poll(http, sb, task["taskUUID"])).json()["data"][0]["status"] == "success"
            assert sb.billing()["tasks"] == 1

    async def test_async_delivery_acknowledges_then_polls(self, http: httpx.AsyncClient) -> None:
        """deliveryMethod async answers at once; getResponse says processing, then success."""
        async with running_sandbox(SandboxSettings(latency="200ms")) as sb:
            task = inference(deliveryMethod="async", numberResults=2)
            ack = (await http.post(sb.url, json=[task], headers=AUTH)).json()["data"]
            assert ack == [
                {"taskType": "imageInference", "taskUUID": task["taskUUID"], "status": "processing"}
            ]
            assert (await poll(http, sb, task["taskUUID"])).json()["data"][0]["status"] == "processing"
            await anyio.sleep(0.3)
            items = (await poll(http, sb, task["taskUUID"])).json()["data"]
        assert [item["status"] for item in items] == ["success", "success"]
        assert len({item["imageUUID"] for item in items}) == 2

    async def test_capacity_refuses_past_n_in_flight(self, http: httpx.AsyncClient) -> None:
        """With capacity 2, a third task while two generate is refused with 429."""
        async with running_sandbox(SandboxSettings(latency="500ms", capacity=2)) as sb:
            for _ in range(2):
                ack = await http.post(sb.url, json=[inference(deliveryMethod="async")], headers=AUTH)
                assert ack.status_code == 200
            refused = await http.post(sb.url, json=[inference()], headers=AUTH)
        assert refused.status_code == 429
        assert refused.json()["errors"][0]["code"] == "queueFull"

    @pytest.mark.parametrize("latency", ["uniform:10ms-30ms", "lognormal:20ms:0.3"])
    async def test_latency_distributions_serve(self, latency: str, http: httpx.AsyncClient) -> None:
        """Distributed latencies still answer every request."""
        async with running_sandbox(SandboxSettings(latency=latency, seed=3)) as sb:
            for _ in range(3):
                assert (await http.post(sb.url, json=[inference()], headers=AUTH)).status_code == 200
            assert sb.billing()["tasks"] == 3


class TestCredit:
    async def test_balance_runs_out_then_top_up(self, http: httpx.AsyncClient) -> None:
        """Past the balance tasks get 402 insufficientCredits; a top-up lets them through again."""
        async with running_sandbox(SandboxSettings(balance_usd=0.025)) as sb:
            statuses = [
                (await http.post(sb.url, json=[inference()], headers=AUTH)).status_code for _ in range(3)
            ]
            assert statuses == [200, 200, 402]
            refused = await http.post(sb.url, json=[inference()], headers=AUTH)
            assert refused.json()["errors"][0]["code"] == "insufficientCredits"
            topped = await http.post(f"{sb.base_url}/sandbox/balance", json={"usd": 0.011})
            assert topped.status_code == 200
            assert (await http.post(sb.url, json=[inference()], headers=AUTH)).status_code == 200
            billing = sb.billing()
        assert billing["tasks"] == 3
        assert billing["total_usd"] == 0.033


class TestControl:
    async def test_same_seed_same_chaos(self, http: httpx.AsyncClient) -> None:
        """Two sandboxes with one seed inject the same faults in the same order."""
        runs = []
        for _ in range(2):
            settings = SandboxSettings(seed=42, faults={"429": 0.3, "503": 0.2})
            async with running_sandbox(settings) as sb:
                statuses = []
                for _ in range(20):
                    response = await http.post(sb.url, json=[inference()], headers=AUTH)
                    statuses.append(response.status_code)
                runs.append(statuses)
        assert runs[0] == runs[1]
        assert {200, 429, 503} <= set(runs[0])

    async def test_faults_change_at_run_time(self, http: httpx.AsyncClient) -> None:
        """POST /sandbox/faults switches faults on and off while the sandbox runs."""
        async with running_sandbox(SandboxSettings()) as sb:
            changed = await http.post(f"{sb.base_url}/sandbox/faults", json={"faults": {"504": 1.0}})
            assert changed.status_code == 200
            assert changed.json()["faults"] == {"504": 1.0}
            assert (await http.post(sb.url, json=[inference()], headers=AUTH)).status_code == 504
            await http.post(f"{sb.base_url}/sandbox/faults", json={"faults": {}})
            assert (await http.post(sb.url, json=[inference()], headers=AUTH)).status_code == 200

    @pytest.mark.parametrize(
        ("payload", "reason"),
        [
            ({"faults": {"418": 0.5}}, "unknown fault"),
            ({"faults": {"429": 1.5}}, "between 0 and 1"),
            ({"latency": "soon"}, "not a duration"),
            ({"port": 1}, "cannot change port"),
            ({"colour": "red"}, "colour"),
        ],
    )
    async def test_bad_fault_settings_are_refused(
        self, payload: dict[str, Any], reason: str, http: httpx.AsyncClient
    ) -> None:
        """A bad change is a 400 naming the problem, and changes nothing."""
        async with running_sandbox(SandboxSettings()) as sb:
            response = await http.post(f"{sb.base_url}/sandbox/faults", json=payload)
            current = (await http.get(f"{sb.base_url}/sandbox/faults")).json()
        assert response.status_code == 400
        assert reason in response.json()["error"]
        assert current["faults"] == {}


class TestInvariants:
    async def test_charged_exactly_when_retrievable(self, http: httpx.AsyncClient) -> None:
        """Under every fault at once, a task is charged if and only if getResponse has its result,
        and the queue never holds more than its capacity."""
        faults = {"429": 0.1, "429-retry-after": 0.05, "500": 0.05, "503": 0.05, "504": 0.05}
        faults |= {"hang": 0.1, "drop": 0.1, "malformed": 0.1}
        settings = SandboxSettings(seed=11, faults=faults, latency="uniform:1ms-20ms", capacity=6)
        sent: list[str] = []
        peak = 0

        async def send(url: str) -> None:
            task = inference()
            sent.append(task["taskUUID"])
            with contextlib.suppress(httpx.HTTPError):  # hung, dropped: the answer is lost, not the task
                await http.post(url, json=[task], headers=AUTH, timeout=0.5)

        async with running_sandbox(settings) as sb:
            async with anyio.create_task_group() as group:
                for _ in range(60):
                    group.start_soon(send, sb.url)
                    peak = max(peak, sb.billing()["in_flight"])
                    await anyio.sleep(0.002)
            await anyio.sleep(0.05)
            sb.configure(faults={})
            found = []
            for task_uuid in sent:
                body = (await poll(http, sb, task_uuid)).json()
                found.append("data" in body and body["data"][0]["status"] == "success")
            billing = sb.billing()
        assert billing["tasks"] == sum(found)
        assert 0 < sum(found) < len(sent)
        assert billing["duplicate_tasks"] == 0
        assert peak <= 6
        assert set(billing["faults"]) <= set(faults)
