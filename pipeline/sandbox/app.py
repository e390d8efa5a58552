"""The sandbox over HTTP: a small ASGI app (no framework, so it stays fast and can spoil answers).

POST /v1                    Runware tasks (a JSON array)
GET  /image/<imageUUID>.ext generated and uploaded images
GET  /sandbox/billing       totals and duplicate charges
GET|POST /sandbox/faults    read or change latency, faults, capacity, balance, seed, key, retired models
POST /sandbox/balance       {"usd": X}: top up the credit
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from decimal import Decimal, InvalidOperation
from typing import Any

import anyio
from pydantic import ValidationError

from pipeline.sandbox.service import Answer, Sandbox

__all__ = ["SandboxApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_MAX_BODY = 64 * 1024 * 1024


class _DeliberateDrop(logging.Filter):
    """uvicorn logs an error when an app ends mid-response: for the ``drop`` fault that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_DeliberateDrop())


def _json(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive) -> bytes | None:
    """The request body; None if the client went away; ``_TooLarge`` past ``_MAX_BODY``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], *, head: bool = False
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _drop(send: Send, answer: Answer) -> None:
    """Start the answer, send half of it, and end: the connection closes mid-response."""
    headers = [_JSON, (b"content-length", str(len(answer.body)).encode())]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send(
        {"type": "http.response.body", "body": answer.body[: len(answer.body) // 2], "more_body": True}
    )


class SandboxApp:
    """ASGI entry point over one ``Sandbox``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path in ("/v1", "/v1/") and method == "POST":
            await self._tasks(scope, receive, send)
        elif path.startswith("/image/") and method in ("GET", "HEAD"):
            await self._image(path[7:], method, send)
        elif path.startswith("/sandbox/"):
            await self._admin(path[9:], method, receive, send)
        elif path in ("/", "/health") and method == "GET":
            await _send(
                send, 200, _json({"sandbox": "runware", "url": f"{self.sandbox.base_url}/v1"}), [_JSON]
            )
        else:
            await _send(
                send, 404, _json({"errors": [{"code": "notFound", "message": f"{method} {path}"}]}), [_JSON]
            )

    async def _tasks(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await _read_body(receive)
        except _TooLarge:
            error = {"code": "payloadTooLarge", "message": f"The request body is over {_MAX_BODY} bytes."}
            await _send(send, 413, _json({"errors": [error]}), [_JSON])
            return
        if body is None:
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
        answer = await self.sandbox.handle(body, authorization)
        if answer.fault == "hang":
            await self._hang(receive, send, answer)
        elif answer.fault == "drop":
            await _drop(send, answer)
        elif answer.fault == "malformed":  # a proper prefix of a JSON object is never valid JSON
            await _send(send, 200, answer.body[: max(1, len(answer.body) // 2)], [_JSON])
        else:
            await _send(send, answer.status, answer.body, [_JSON, *answer.headers])

    async def _hang(self, receive: Receive, send: Send, answer: Answer) -> None:
        """Hold the answer until the client gives up (or the sandbox closes: then drop it)."""
        gone = False

        async def watch(scope: anyio.CancelScope) -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            scope.cancel()

        with anyio.move_on_after(self.sandbox.settings.hang_max_s):
            async with anyio.create_task_group() as group:
                group.start_soon(watch, group.cancel_scope)
                await self.sandbox.closing.wait()
                group.cancel_scope.cancel()
        if not gone:
            await _drop(send, answer)

    async def _image(self, name: str, method: str, send: Send) -> None:
        found = await self.sandbox.images.fetch(name)
        if found is None:
            await _send(
                send, 404, _json({"errors": [{"code": "notFound", "message": "no such image"}]}), [_JSON]
            )
            return
        data, mime = found
        headers = [(b"content-type", mime.encode()), (b"cache-control", b"public, max-age=86400")]
        await _send(send, 200, data, headers, head=method == "HEAD")

    async def _admin(self, name: str, method: str, receive: Receive, send: Send) -> None:
        sandbox = self.sandbox
        if name == "billing" and method == "GET":
            await _send(send, 200, _json(sandbox.billing_summary()), [_JSON])
            return
        if name == "charges" and method == "GET":
            charges = [charge.as_json() for charge in list(sandbox.billing.charges)]
            await _send(send, 200, _json({"charges": charges}), [_JSON])
            return
        if name == "faults" and method == "GET":
            await _send(
                send, 200, _json(sandbox.settings.model_dump(mode="json", exclude={"api_key"})), [_JSON]
            )
            return
        if method != "POST" or name not in ("faults", "balance"):
            await _send(send, 404, _json({"error": f"no admin endpoint {method} /sandbox/{name}"}), [_JSON])
            return
        try:
            payload = json.loads(await _read_body(receive) or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
            if name == "faults":
                sandbox.configure(payload)
                result: dict[str, Any] = sandbox.settings.model_dump(mode="json", exclude={"api_key"})
            else:
                sandbox.billing.top_up(Decimal(str(payload["usd"])))
                result = sandbox.billing_summary()
        except (ValueError, KeyError, ValidationError, InvalidOperation, _TooLarge) as exc:
            await _send(send, 400, _json({"error": _reason(exc)}), [_JSON])
            return
        await _send(send, 200, _json(result), [_JSON])


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc) or type(exc).__name__
