"""A connection pool for a wide window: httpx's pool, split into small shards.

    transport = ShardedTransport(connections=72, proxy=None)   # 9 pools of 8 connections
    async with httpx.AsyncClient(mounts={"https://api.runware.ai": transport}) as http:
        ...                                                     # each request goes to the least busy pool

httpcore (1.0.x) walks every connection of its pool for every queued request each time a request
starts or ends, so one pool of 72 connections costs the event loop time quadratic in the window: at
concurrency 64 that was three quarters of a run's CPU. Small pools keep that walk short; a request goes
to the pool with the fewest requests under way (counted until its response is closed), so no pool queues
while another has a free connection.
"""

from __future__ import annotations

import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable

import httpx

__all__ = ["SHARD_CONNECTIONS", "ShardedTransport", "environment_proxy"]

SHARD_CONNECTIONS = 8  # connections a shard holds at most


class ShardedTransport(httpx.AsyncBaseTransport):
    """``connections`` keep-alive connections in pools of at most ``SHARD_CONNECTIONS`` each."""

    def __init__(
        self, connections: int, *, proxy: str | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        count = max(1, -(-connections // SHARD_CONNECTIONS))
        per_shard = -(-connections // count)
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        ssl_context = ssl_context or httpx.create_ssl_context()  # loaded once (25 ms), for every shard
        self._shards = [
            httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, proxy=proxy) for _ in range(count)
        ]
        self._busy = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = self._busy.index(min(self._busy))
        self._busy[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            self._busy[index] -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)  # what an async transport answers
        stream = _Released(response.stream, lambda: self._release(index))
        return httpx.Response(
            response.status_code, headers=response.headers, stream=stream, extensions=response.extensions
        )

    @property
    def in_flight(self) -> int:
        """Requests sent whose response is not closed yet."""
        return sum(self._busy)

    def _release(self, index: int) -> None:
        self._busy[index] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Released(httpx.AsyncByteStream):
    """A response body that calls ``release`` once, when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def environment_proxy(url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``...) names for ``url``."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")
