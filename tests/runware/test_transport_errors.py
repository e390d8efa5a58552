"""Every exception httpx can raise is classified by the client: never sent (retry at once), in doubt
(settle with getResponse first), or one a POST cannot meet. A new httpx exception fails here until it
is placed: the money rule depends on the difference."""

from __future__ import annotations

import inspect

import httpx
import pytest
from helpers.sandbox_tasks import inference

from pipeline.errors import InDoubtError, TransientProviderError
from pipeline.runware.client import UNREACHABLE, RunwareClient

pytestmark = pytest.mark.anyio

NEVER_SENT, IN_DOUBT, NOT_FROM_A_POST = "never sent", "in doubt", "not from a POST"

# Every exception class httpx exports, and what a request that raised it means for the task.
KINDS = {
    "ConnectError": NEVER_SENT,
    "ConnectTimeout": NEVER_SENT,
    "PoolTimeout": NEVER_SENT,
    "UnsupportedProtocol": NEVER_SENT,
    "ProxyError": IN_DOUBT,  # cautious: getResponse says "unknown" and the task is sent again
    "LocalProtocolError": IN_DOUBT,
    "RemoteProtocolError": IN_DOUBT,
    "ProtocolError": IN_DOUBT,
    "ReadError": IN_DOUBT,
    "WriteError": IN_DOUBT,
    "CloseError": IN_DOUBT,
    "NetworkError": IN_DOUBT,
    "ReadTimeout": IN_DOUBT,
    "WriteTimeout": IN_DOUBT,
    "TimeoutException": IN_DOUBT,
    "DecodingError": IN_DOUBT,
    "TooManyRedirects": IN_DOUBT,
    "TransportError": IN_DOUBT,
    "RequestError": IN_DOUBT,
    "HTTPError": IN_DOUBT,
    "HTTPStatusError": IN_DOUBT,  # only from raise_for_status, which the client never calls
    # Not errors of a request in flight: bad use of the API, which the client's code does not make.
    "InvalidURL": NOT_FROM_A_POST,  # the endpoint is checked when the provider profile is loaded
    "CookieConflict": NOT_FROM_A_POST,
    "StreamError": NOT_FROM_A_POST,
    "StreamConsumed": NOT_FROM_A_POST,
    "StreamClosed": NOT_FROM_A_POST,
    "RequestNotRead": NOT_FROM_A_POST,
    "ResponseNotRead": NOT_FROM_A_POST,
}


def httpx_exceptions() -> dict[str, type[BaseException]]:
    return {
        name: cls
        for name, cls in vars(httpx).items()
        if inspect.isclass(cls) and issubclass(cls, BaseException)
    }


def instance(cls: type[BaseException]) -> BaseException:
    request = httpx.Request("POST", "http://provider.test/v1")
    if cls is httpx.HTTPStatusError:
        return cls("boom", request=request, response=httpx.Response(500, request=request))
    if issubclass(cls, httpx.RequestError) or cls is httpx.TooManyRedirects:
        return cls("boom", request=request)
    return cls("boom")


def test_every_httpx_exception_is_placed() -> None:
    """The table above names every exception httpx exports, no more."""
    assert set(KINDS) == set(httpx_exceptions())


def test_what_a_post_can_meet_is_an_httpx_error() -> None:
    """Everything but the API misuses derives from ``httpx.HTTPError``, which the client catches."""
    for name, cls in httpx_exceptions().items():
        assert issubclass(cls, httpx.HTTPError) == (KINDS[name] != NOT_FROM_A_POST), name


@pytest.mark.parametrize("name", sorted(n for n, kind in KINDS.items() if kind != NOT_FROM_A_POST))
async def test_the_client_classifies_it(name: str) -> None:
    """A request that raises it becomes a plain transient refusal (never sent) or an InDoubtError."""
    error = instance(httpx_exceptions()[name])

    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as http:
        client = RunwareClient(http, "http://provider.test/v1", "sk-secret")
        with pytest.raises(TransientProviderError) as caught:
            await client.infer(inference())
    in_doubt = isinstance(caught.value, InDoubtError)
    assert in_doubt == (KINDS[name] == IN_DOUBT), name
    assert (caught.value.code == UNREACHABLE) == (KINDS[name] == NEVER_SENT), name
