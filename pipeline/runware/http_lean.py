"""The provider's POSTs over plain HTTP/1.1 keep-alive connections: asyncio protocols, httptools' parser.

    url = httpx.URL("https://api.runware.ai/v1")
    head = post_head(url, {"Authorization": "Bearer ...", "Content-Type": "application/json"}, len(body))
    async with LeanConnections(72) as connections:                         # closed on exit
        answer = await connections.post(url, head, body, httpx.Timeout(180))  # Answer(status, headers, body)

A run keeps a window's worth of requests in flight, each a small JSON POST answered by a small JSON body.
Through httpx, each cost about 1.5 ms of the event loop (request and response models, httpcore's pool,
h11's pure-Python parser), and the cycles those objects form left the garbage collector pausing the loop;
every answer that arrives while the loop is busy waits. Here a connection is an ``asyncio.Protocol``
whose answer httptools (C, the parser uvicorn uses) reads as it arrives, and a request is two byte
strings: at concurrency 64 and 500 ms answers, a bare loop of requests spends 0.35 ms of CPU a request
instead of 1.7 ms, and does 125 requests a second instead of 122. Answers are read whole (the
provider's are a few KB); ``RunwareClient`` sends everything else (and everything, behind a proxy)
through httpx.

Failures are httpx's exceptions, so the client classifies them in one place (``runware.transport_error``):
no connection (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``: the request never left), and after
the request left, ``ReadTimeout``, ``WriteTimeout``, ``RemoteProtocolError`` or ``DecodingError`` (the
task is in doubt). Timeouts are ``httpx.Timeout``'s: read is the longest silence while the answer is
awaited.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import httptools
import httpx

__all__ = ["Answer", "LeanConnections", "post_head"]


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: writes a request, parses its answer, says whether it can be reused."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[None] | None = None
        self._on_data: asyncio.Timeout | None = None
        self._read_s: float | None = None
        self._drained: asyncio.Future[None] | None = None
        self.closed = False
        self._clear()

    def _clear(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self._complete = False
        self._headers_done = False

    # -- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._answer is None:  # nothing was asked: the connection can no longer be trusted
            self.close()
            return
        if self._on_data is not None and self._read_s is not None:
            self._on_data.reschedule(asyncio.get_running_loop().time() + self._read_s)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._complete or self._answer is None:
            return
        if self._headers_done and self._reads_to_eof():
            self.on_message_complete()
            return
        what = "while sending its answer" if self._headers_done else "without sending an answer"
        self._fail(httpx.RemoteProtocolError(f"Server disconnected {what}."))

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self._complete = True
        if not self._parser.should_keep_alive():
            self.close()
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_result(None)

    # -- the caller's side ----------------------------------------------------------------------------

    async def exchange(self, head: bytes, body: bytes, timeouts: dict[str, float | None]) -> Answer:
        """Send one request and wait for its whole answer."""
        assert self._transport is not None
        self._clear()
        loop = asyncio.get_running_loop()
        self._answer = answer = loop.create_future()
        self._transport.write(head + body)
        if self._drained is not None:
            try:
                async with asyncio.timeout(timeouts.get("write")):
                    await asyncio.shield(self._drained)
            except TimeoutError:
                self.close()
                raise httpx.WriteTimeout("timed out sending the request") from None
        self._read_s = timeouts.get("read")
        try:
            async with asyncio.timeout(self._read_s) as self._on_data:
                await answer
        except TimeoutError:
            self.close()
            raise httpx.ReadTimeout("timed out waiting for the answer") from None
        finally:
            self._on_data = None
            if not answer.done():  # cancelled: the answer would belong to no one
                self.close()
        return Answer(self.status, _headers(self.headers), _decoded(self.headers, self.body))

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: Exception) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(error)

    def _reads_to_eof(self) -> bool:
        """An answer with neither a length nor chunks ends when the server closes the connection."""
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names


class LeanConnections:
    """Up to ``connections`` keep-alive connections to one origin, the most recently used first."""

    def __init__(self, connections: int, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._size = connections
        self._places: asyncio.Semaphore | None = None  # made on the loop that uses it
        self._idle: list[_Connection] = []
        self._ssl = ssl_context  # for an https origin: made on first use when not given
        self.in_flight = 0  # requests sent whose answer has not come yet

    async def post(self, url: httpx.URL, head: bytes, body: bytes, timeouts: httpx.Timeout) -> Answer:
        """Send a request (``head``: its request line and headers, ``post_head`` builds it) on a pooled
        connection, and read its answer whole."""
        limits = timeouts.as_dict()
        async with self._place(limits.get("pool")):
            connection = await self._connection(url, limits.get("connect"))
            self.in_flight += 1
            try:
                answer = await connection.exchange(head, body, limits)
            except BaseException:
                connection.close()  # whatever it still holds belongs to no request
                raise
            finally:
                self.in_flight -= 1
            if not connection.closed:
                self._idle.append(connection)
        return answer

    def _place(self, pool_s: float | None) -> _Place:
        if self._places is None:
            self._places = asyncio.Semaphore(self._size)
        return _Place(self._places, pool_s)

    async def _connection(self, url: httpx.URL, connect_s: float | None) -> _Connection:
        """The most recently used idle connection still open, or a new one."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return await self._connect(url, connect_s)

    async def _connect(self, url: httpx.URL, connect_s: float | None) -> _Connection:
        secure = url.scheme == "https"
        if secure and self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        port = url.port or (443 if secure else 80)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_s):
                _, connection = await loop.create_connection(
                    _Connection, url.host, port, ssl=self._ssl if secure else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {url.host}:{port} in {connect_s} s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"{url.host}:{port}: {exc.strerror or exc}") from None
        return connection

    def close(self) -> None:
        """Close the idle connections (those under way close when their request ends)."""
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    async def __aenter__(self) -> LeanConnections:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Place:
    """A place in the pool, waited for at most ``pool_s`` seconds (``PoolTimeout``)."""

    def __init__(self, places: asyncio.Semaphore, pool_s: float | None) -> None:
        self._places = places
        self._pool_s = pool_s

    async def __aenter__(self) -> None:
        try:
            async with asyncio.timeout(self._pool_s):
                await self._places.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in the pool") from None

    async def __aexit__(self, *exc: object) -> None:
        self._places.release()


@dataclass(frozen=True)
class Answer:
    """An HTTP answer read whole: status, headers (names in lower case) and the decoded body."""

    status: int
    headers: dict[str, str]
    body: bytes


def post_head(url: httpx.URL, headers: Mapping[str, str], length: int) -> bytes:
    """The request line and headers of a POST of ``length`` bytes to ``url``."""
    lines = [f"POST {url.raw_path.decode('ascii')} HTTP/1.1", f"Host: {url.netloc.decode('ascii')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Accept-Encoding: gzip, deflate", f"Content-Length: {length}", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


def _decoded(headers: list[tuple[bytes, bytes]], parts: list[bytes]) -> bytes:
    """The body, inflated if the server compressed it (gzip or deflate: what the request accepts)."""
    body = b"".join(parts)
    encoding = _headers(headers).get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise httpx.DecodingError(f"answer encoded as {encoding!r}, which was not asked for")
    try:
        return zlib.decompress(body, wbits=47)  # 32 + 15: gzip or zlib, told by the header
    except zlib.error as exc:
        raise httpx.DecodingError(f"{encoding} answer that does not inflate: {exc}") from None
