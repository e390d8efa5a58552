"""Shared fixtures. Helpers add fixtures here; nothing is rewritten."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the engine and the sandbox both use it)."""
    return "asyncio"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for talking to a sandbox over loopback."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client
