"""Shared fixtures. Helpers add fixtures here; nothing is rewritten."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the engine and the sandbox both use it)."""
    return "asyncio"
