"""ASGI middleware that Bottega's HTTP services share: a body size limit, and a bearer token
checked before anything of the request is read.

Both answer on their own, before the application (and FastAPI's body parsing) sees the request:
a client without the token cannot make a service buffer a large body, and learns nothing from a
422 about what the body should have been.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bottega.auth import bearer_matches

# Methods that only read: everything else may change state, so it needs the token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Answer a request with a JSON body, without the application."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def too_large_body(limit: int) -> bytes:
    """The default 413 body: the same shape as the model server's errors."""
    return json.dumps(
        {
            "error": f"the request body is over the limit of {limit} bytes",
            "fields": [{"field": "body", "message": "too large"}],
        }
    ).encode()


class BodyLimit:
    """Refuses a body over ``limit`` bytes with a 413, by its header or as it streams in."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        on_reject: Callable[[], None] = lambda: None,
        body: Callable[[int], bytes] = too_large_body,
    ) -> None:
        self.app = app
        self.limit = limit
        self.on_reject = on_reject
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._reject(send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        self.on_reject()
        await send_json(send, 413, self.body(self.limit), [])


class _TooLarge(Exception):
    pass


class BearerGuard:
    """Answers 401 to any request that may change state (not GET, HEAD or OPTIONS) unless its
    ``Authorization`` header carries the token, compared in constant time.

    ``sources`` names the caller of each guarded path for ``on_reject`` (a metric label); other
    paths are reported as ``"other"``. The token is never logged or echoed.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: SecretStr,
        *,
        sources: Mapping[str, str] | None = None,
        on_reject: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.app = app
        self.token = token
        self.sources = dict(sources or {})
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        if bearer_matches(authorization, self.token):
            await self.app(scope, receive, send)
            return
        self.on_reject(self.sources.get(scope["path"].rstrip("/") or "/", "other"))
        body = json.dumps({"detail": "a valid bearer token is required"}).encode()
        await send_json(send, 401, body, [(b"www-authenticate", b"Bearer")])
