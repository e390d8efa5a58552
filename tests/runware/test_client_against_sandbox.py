"""The project's own Runware client reads every sandbox failure as the error type the engine expects."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest
from helpers.sandbox_tasks import inference

from pipeline.errors import FatalProviderError, PermanentProviderError, TransientProviderError
from pipeline.runware.client import InDoubtError, RunwareClient, TaskConflictError
from pipeline.sandbox import SandboxSettings, running_sandbox

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("settings", "expected", "in_doubt"),
    [
        (SandboxSettings(faults={"429": 1.0}), TransientProviderError, False),
        (SandboxSettings(faults={"503": 1.0}), TransientProviderError, False),
        (SandboxSettings(faults={"504": 1.0}), TransientProviderError, False),
        (SandboxSettings(faults={"500": 1.0}), InDoubtError, True),
        (SandboxSettings(faults={"drop": 1.0}), InDoubtError, True),
        (SandboxSettings(faults={"malformed": 1.0}), InDoubtError, True),
        (SandboxSettings(faults={"hang": 1.0}), InDoubtError, True),
        (SandboxSettings(balance_usd=0.0), FatalProviderError, False),
        (SandboxSettings(api_key="another"), FatalProviderError, False),
    ],
)
async def test_failures_are_classified(
    settings: SandboxSettings, expected: type[Exception], in_doubt: bool
) -> None:
    """Refusals are transient, lost answers in doubt, and no key or no credit fatal."""
    async with running_sandbox(settings) as sb, httpx.AsyncClient(timeout=0.5) as http:
        client = RunwareClient(http, sb.url, "key")
        with pytest.raises(expected) as info:
            await client.infer(inference())
    assert isinstance(info.value, InDoubtError) == in_doubt


async def test_retry_after_reaches_the_client() -> None:
    """The 429-retry-after fault's header arrives as retry_after seconds."""
    async with (
        running_sandbox(SandboxSettings(faults={"429-retry-after": 1.0})) as sb,
        httpx.AsyncClient() as http,
    ):
        with pytest.raises(TransientProviderError) as info:
            await RunwareClient(http, sb.url, "key").infer(inference())
    assert info.value.retry_after == 1.0


async def test_reconcile_after_a_lost_answer() -> None:
    """After a dropped answer: getResponse has the images, and re-sending the taskUUID is a conflict."""
    async with running_sandbox(SandboxSettings(faults={"drop": 1.0})) as sb, httpx.AsyncClient() as http:
        client = RunwareClient(http, sb.url, "key")
        lost = inference()
        with pytest.raises(InDoubtError):
            await client.infer(lost)
        status = await client.get_response(lost["taskUUID"], expected=1)
        assert status.state == "success"
        assert status.images[0].cost_usd == Decimal("0.011")
        sb.configure(faults={})
        with pytest.raises(TaskConflictError):
            await client.infer(lost)
        assert (await client.get_response(str(uuid.uuid4()), expected=1)).state == "unknown"
        with pytest.raises(PermanentProviderError) as info:
            await client.infer(inference(seed=3))
        assert info.value.parameter == "seed"
        assert sb.billing()["tasks"] == 1
