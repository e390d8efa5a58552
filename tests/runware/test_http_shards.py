"""The sharded pool: a whole window of requests in flight at once over real loopback HTTP, every
response's place given back (answers, errors, dropped connections), and the environment's proxy."""

from __future__ import annotations

import anyio
import httpx
import pytest
from helpers.sandbox_tasks import inference, most_in_flight

from pipeline.runware.client import InDoubtError, RunwareClient
from pipeline.runware.http_shards import SHARD_CONNECTIONS, ShardedTransport, environment_proxy
from pipeline.sandbox import SandboxSettings, running_sandbox

pytestmark = pytest.mark.anyio

WINDOW = 3 * SHARD_CONNECTIONS - 2  # three shards, not all full


async def test_the_whole_window_is_in_flight_at_once() -> None:
    """No shard queues a request while another has a free connection: the sandbox sees them all."""
    transport = ShardedTransport(WINDOW)
    async with (
        running_sandbox(SandboxSettings(latency="300ms")) as sb,
        httpx.AsyncClient(transport=transport, timeout=30) as http,
    ):
        client = RunwareClient(http, sb.url, "key")
        assert await most_in_flight(sb, client, WINDOW) == WINDOW
        assert transport.in_flight == 0
        assert sb.billing()["tasks"] == WINDOW


async def test_every_place_is_given_back_after_errors_and_lost_answers() -> None:
    transport = ShardedTransport(WINDOW)
    faults = {"500": 0.2, "drop": 0.2, "429": 0.2}
    async with (
        running_sandbox(SandboxSettings(faults=faults, seed=3)) as sb,
        httpx.AsyncClient(transport=transport, timeout=5) as http,
    ):
        client = RunwareClient(http, sb.url, "key")
        outcomes: list[str] = []

        async def send() -> None:
            try:
                await client.infer(inference())
                outcomes.append("ok")
            except InDoubtError:
                outcomes.append("in doubt")
            except Exception as exc:  # refusals: the place comes back all the same
                outcomes.append(type(exc).__name__)

        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(send)
        assert {"ok", "in doubt"} <= set(outcomes)
        assert transport.in_flight == 0


async def test_a_refused_connection_gives_its_place_back() -> None:
    transport = ShardedTransport(4)
    async with httpx.AsyncClient(transport=transport, timeout=2) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post("http://127.0.0.1:9/v1", json=[])  # the discard port: nobody listens
    assert transport.in_flight == 0


def test_proxy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert environment_proxy("https://api.runware.ai/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert environment_proxy("https://api.runware.ai/v1") == "http://proxy.internal:3128"
    assert environment_proxy("http://127.0.0.1:8080/v1") is None
