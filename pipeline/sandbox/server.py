"""Run the sandbox on a real server (uvicorn), in-process or in a background thread.

    async with running_sandbox(SandboxSettings(faults={"429": 0.1})) as sb:
        sb.url          # "http://127.0.0.1:PORT/v1"
        sb.billing()    # what GET /sandbox/billing answers
    with SandboxThread(SandboxSettings()) as sb:   # the same, for sync code and subprocess tests
        ...

Closing the sandbox drops hung requests and cancels tasks still generating.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from decimal import Decimal
from types import TracebackType
from typing import Any

import anyio
import uvicorn
from anyio.from_thread import BlockingPortal, start_blocking_portal

from pipeline.sandbox.app import SandboxApp
from pipeline.sandbox.service import Sandbox
from pipeline.sandbox.settings import SandboxSettings

__all__ = ["SandboxHandle", "SandboxThread", "running_sandbox"]


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (the host program owns SIGINT and SIGTERM) and without its
    fixed waits on the way out: its 0.1 s tick and its 0.1 s pause in shutdown made every stop take
    0.2 s, and a test run starts some 220 sandboxes. ``stop()`` asks it to stop at once."""

    ready: anyio.Event
    _stop: anyio.Event

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop = anyio.Event()
        await super().startup(sockets)
        self.ready.set()

    def stop(self) -> None:
        self.should_exit = True
        self._stop.set()

    async def main_loop(self) -> None:
        """uvicorn's loop (its ``on_tick`` keeps the Date header fresh), woken at once by ``stop``."""
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with anyio.move_on_after(0.1):
                await self._stop.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, close every connection (a request under way is answered first), wait up to
        ``timeout_graceful_shutdown`` for the requests under way, then cancel what is left."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        if self.server_state.tasks:  # the requests under way (uvicorn serves on asyncio)
            await asyncio.wait(list(self.server_state.tasks), timeout=self.config.timeout_graceful_shutdown)
        for task in self.server_state.tasks:
            task.cancel()


class SandboxHandle:
    """A running sandbox: its URLs and its in-process controls."""

    def __init__(self, sandbox: Sandbox, base_url: str, portal: BlockingPortal | None = None) -> None:
        self.sandbox = sandbox
        self.base_url = base_url
        self.url = f"{base_url}/v1"
        self._portal = portal

    def _call(self, func: Any, *args: Any) -> Any:
        return func(*args) if self._portal is None else self._portal.call(func, *args)

    def billing(self) -> dict[str, Any]:
        """Totals and duplicate charges (as ``GET /sandbox/billing``)."""
        return dict(self._call(self.sandbox.billing_summary))

    def configure(self, **changes: Any) -> None:
        """Change latency, faults, capacity, balance, seed, key or retired models while running."""
        self._call(self.sandbox.configure, changes)

    def top_up(self, usd: float) -> None:
        self._call(self.sandbox.billing.top_up, Decimal(str(usd)))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: no Nagle wait between the head and the body of an answer.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def running_sandbox(
    settings: SandboxSettings | None = None, *, portal: BlockingPortal | None = None
) -> AsyncIterator[SandboxHandle]:
    """Serve a sandbox on ``settings.host:settings.port`` (0 = a free port) until the block ends."""
    settings = settings or SandboxSettings()
    sock = _bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    base_url = _base_url(settings.host, port)
    async with anyio.create_task_group() as group:
        sandbox = Sandbox(settings, group)
        sandbox.base_url = base_url
        config = uvicorn.Config(
            SandboxApp(sandbox),
            http="httptools",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=75,  # idle pooled connections stay usable, as on a production API
            backlog=2048,
        )
        server = _Server(config)
        server.ready = anyio.Event()
        stopped = anyio.Event()

        async def serve() -> None:
            try:
                await server.serve([sock])
            finally:
                stopped.set()
                server.ready.set()

        group.start_soon(serve)
        await server.ready.wait()
        if stopped.is_set() or not server.started:
            raise RuntimeError(f"the sandbox could not start on {base_url}")
        try:
            yield SandboxHandle(sandbox, base_url, portal)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                sandbox.closing.set()
                server.stop()
                await stopped.wait()
            group.cancel_scope.cancel()
            sock.close()


class SandboxThread(AbstractContextManager["SandboxHandle"]):
    """``running_sandbox`` on an event loop of its own, in a background thread (for sync code)."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self._portal_cm: Any = None
        self._sandbox_cm: Any = None
        self._handle: SandboxHandle | None = None

    def __enter__(self) -> SandboxHandle:
        self._portal_cm = start_blocking_portal("asyncio")
        portal = self._portal_cm.__enter__()
        try:
            self._sandbox_cm = portal.wrap_async_context_manager(
                running_sandbox(self.settings, portal=portal)
            )
            handle: SandboxHandle = self._sandbox_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        self._handle = handle
        return handle

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._sandbox_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)
            if self._handle is not None:  # its loop is gone: read the final state directly
                self._handle._portal = None
