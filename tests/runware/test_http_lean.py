"""The lean POST connections: a whole window against the real sandbox over loopback, and what a server
can do wrong, each classified as the client's money rules need (never sent, or in doubt)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from helpers.sandbox_tasks import inference, most_in_flight

from pipeline.runware.client import UNREACHABLE, InDoubtError, RunwareClient
from pipeline.runware.http_lean import LeanConnections, post_head
from pipeline.sandbox import SandboxSettings, running_sandbox

pytestmark = pytest.mark.anyio

WINDOW = 24
TIMEOUTS = httpx.Timeout(5)

# A scripted server: reads one request, then does what the handler says with the writer.
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[str]:
    """A loopback server whose every connection is handled by ``handler``; its URL. The client going
    away ends a handler quietly; every handler is ended and its connection closed on exit."""
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


async def read_request_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)


def answer(body: bytes, *headers: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers, "", ""]
    return "\r\n".join(lines).encode() + body


async def post(connections: LeanConnections, url: str, body: bytes = b"[]") -> tuple[int, bytes]:
    target = httpx.URL(url)
    head = post_head(target, {"Content-Type": "application/json"}, len(body))
    got = await connections.post(target, head, body, TIMEOUTS)
    return got.status, got.body


class TestAgainstTheSandbox:
    async def test_a_whole_window_in_flight_at_once_over_reused_connections(self) -> None:
        """Every request of a window is at the sandbox at the same time; the second window reuses the
        first one's connections (the sandbox is asked on no new connection)."""
        async with (
            running_sandbox(SandboxSettings(latency="300ms")) as sb,
            httpx.AsyncClient(timeout=30) as http,
            LeanConnections(WINDOW) as lean,
        ):
            client = RunwareClient(http, sb.url, "key", lean=lean)
            assert await most_in_flight(sb, client, WINDOW, waves=2) == WINDOW
            assert lean.in_flight == 0
            assert sb.billing()["tasks"] == 2 * WINDOW
            assert len(lean._idle) == WINDOW

    async def test_the_answer_is_the_one_httpx_reads(self) -> None:
        """A sync task's answer is read whole: the images the provider reports for the task later."""
        async with (
            running_sandbox() as sb,
            httpx.AsyncClient(timeout=30) as http,
            LeanConnections(4) as lean,
        ):
            task = inference()
            images = await RunwareClient(http, sb.url, "key", lean=lean).infer(task)
            status = await RunwareClient(http, sb.url, "key").get_response(task["taskUUID"], expected=1)
            picture = await http.get(images[0].image_url)
        assert [i.image_uuid for i in images] == [i.image_uuid for i in status.images]
        assert images[0].cost_usd is not None and images[0].cost_usd > 0
        assert picture.status_code == 200 and picture.content[:2] == b"\xff\xd8"  # a real JPEG


class TestWhatAServerCanDoWrong:
    async def test_no_server_is_a_request_that_never_left(self) -> None:
        """Connection refused: the client's ``connectError`` (a plain retry, nothing in doubt)."""
        async with scripted(read_request_only) as url:
            pass  # closed: nothing listens on that port any more
        async with httpx.AsyncClient() as http, LeanConnections(2) as lean:
            with pytest.raises(Exception) as caught:
                await RunwareClient(http, url, "key", lean=lean).infer(inference())
        assert not isinstance(caught.value, InDoubtError)
        assert getattr(caught.value, "code", None) == UNREACHABLE

    async def test_a_connection_closed_without_an_answer_leaves_the_task_in_doubt(self) -> None:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.close()

        async with scripted(hang_up) as url, httpx.AsyncClient() as http, LeanConnections(2) as lean:
            with pytest.raises(InDoubtError, match="without sending an answer"):
                await RunwareClient(http, url, "key", lean=lean).infer(inference())
            assert lean.in_flight == 0
            assert lean._idle == []

    async def test_an_answer_cut_short_leaves_the_task_in_doubt(self) -> None:
        async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(answer(b'{"data": []}')[:-4])
            await writer.drain()
            writer.close()

        async with scripted(cut) as url, httpx.AsyncClient() as http, LeanConnections(2) as lean:
            with pytest.raises(InDoubtError, match="while sending its answer"):
                await RunwareClient(http, url, "key", lean=lean).infer(inference())

    async def test_silence_is_a_read_timeout_and_the_connection_is_dropped(self) -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await asyncio.sleep(10)

        async with scripted(silent) as url, LeanConnections(2) as lean:
            target = httpx.URL(url)
            head = post_head(target, {}, 2)
            with pytest.raises(httpx.ReadTimeout):
                await lean.post(target, head, b"[]", httpx.Timeout(5, read=0.2))
            assert lean._idle == []

    async def test_a_gzipped_chunked_answer_is_read_whole(self) -> None:
        body = b'{"data": [' + b", ".join(b'{"n": %d}' % i for i in range(500)) + b"]}"
        packed = gzip.compress(body)

        async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
            chunks = [packed[i : i + 100] for i in range(0, len(packed), 100)]
            framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
            writer.write(head.encode() + framed + b"0\r\n\r\n")
            await writer.drain()

        async with scripted(chunked) as url, LeanConnections(2) as lean:
            assert await post(lean, url) == (200, body)

    async def test_connection_close_is_honoured_and_an_answer_to_eof_is_whole(self) -> None:
        """An answer without a length ends when the server closes; that connection is not reused."""
        connections = 0

        async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 70_000)
            await writer.drain()
            writer.close()

        async with scripted(once) as url, LeanConnections(2) as lean:
            for _ in range(3):
                assert await post(lean, url) == (200, b"x" * 70_000)
        assert connections == 3

    async def test_a_connection_the_server_closed_while_idle_is_not_used_again(self) -> None:
        connections = 0

        async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            await read_request(reader)
            writer.write(answer(b"ok"))  # keep-alive, then the server's idle timeout
            await writer.drain()
            writer.close()

        async with scripted(one_answer) as url, LeanConnections(2) as lean:
            assert await post(lean, url) == (200, b"ok")
            await asyncio.sleep(0.1)
            assert await post(lean, url) == (200, b"ok")
        assert connections == 2

    async def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool(self) -> None:
        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await read_request(reader)
                await asyncio.sleep(0.3)
                writer.write(answer(b"late"))
                await writer.drain()

        async with scripted(slow) as url, LeanConnections(2) as lean:
            with anyio.move_on_after(0.05):
                await post(lean, url)
            assert lean.in_flight == 0
            assert lean._idle == []
            assert await post(lean, url) == (200, b"late")  # a new connection: no stale answer

    async def test_the_api_key_is_sent_and_never_in_an_error(self) -> None:
        seen: list[bytes] = []

        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nbad")  # 2 bytes short
            await writer.drain()
            writer.close()

        async with scripted(refuse) as url, httpx.AsyncClient() as http, LeanConnections(2) as lean:
            with pytest.raises(InDoubtError) as caught:
                await RunwareClient(http, url, "sk-secret", lean=lean).infer(inference())
        assert b"Authorization: Bearer sk-secret" in seen[0]
        assert "sk-secret" not in str(caught.value)
