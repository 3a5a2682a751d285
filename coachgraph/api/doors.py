"""What every door accepts before any work is done: bounded headers, JSON of bounded nesting,
and bodies read against a size, a wait per piece and a minimum rate (chunked bodies too)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from array import array
from collections.abc import AsyncIterator, Iterable
from itertools import accumulate
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coachgraph.config import Limits

# the HTTP status each API.md code answers with on a route of its own (ingest, media)
STATUS_OF_CODE = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "RATE_LIMITED": 429,
    "UNAVAILABLE": 503,  # a store is down: retry later, unlike a 4xx
}
CODE_OF_STATUS = {status: code for code, status in STATUS_OF_CODE.items()}


class Refusal(Exception):
    """A request refused at the door: its HTTP status, an API.md code, and a message."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str = "BAD_USER_INPUT",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers

    def graphql_response(
        self, headers: dict[str, str] | None = None, *, media_type: str = "application/json"
    ) -> JSONResponse:
        """The refusal as a GraphQL response: no data, one coded error (in
        application/graphql-response+json, as that spec says of request errors, no `data` key
        at all)."""
        body: dict[str, object] = {
            "errors": [{"message": self.message, "extensions": {"code": self.code}}]
        }
        if media_type == "application/json":
            body = {"data": None, **body}
        return JSONResponse(
            body,
            status_code=self.status,
            headers={**(self.headers or {}), **(headers or {})},
            media_type=media_type,
        )

    def response_for(
        self, path: str, headers: dict[str, str] | None = None, *, media_type: str | None = None
    ) -> JSONResponse:
        """The refusal in the shape `path` answers errors in: GraphQL's on /graphql (in
        `media_type`, the one the client's Accept chose), `{"error": {message, code}}` on the
        other routes."""
        if path == "/graphql" or path.startswith("/graphql/"):
            return self.graphql_response(headers, media_type=media_type or "application/json")
        return self.route_response(headers=headers)

    def route_response(
        self, extra: dict[str, object] | None = None, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        """`{"error": {message, code, ...extra}}`, as the ingest and media routes answer."""
        body = {"message": self.message, "code": self.code, **(extra or {})}
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)

    @classmethod
    def of_status(cls, status: int, message: str) -> Refusal:
        """A refusal whose code follows from its status (BAD_USER_INPUT for the rest)."""
        return cls(status, message, CODE_OF_STATUS.get(status, "BAD_USER_INPUT"))


def check_headers(headers: Iterable[tuple[bytes, bytes]], limits: Limits) -> None:
    """Refuse a request whose headers, one or all together, are larger than the limits."""
    total = 0
    for name, value in headers:
        size = len(name) + len(value)
        if size > limits.max_header_bytes_each:
            raise Refusal(
                431, f"A request header is larger than {limits.max_header_bytes_each} bytes"
            )
        total += size + 4  # ": " and CRLF, as on the wire
    if total > limits.max_header_bytes:
        raise Refusal(431, f"The request headers are larger than {limits.max_header_bytes} bytes")


class HeaderLimits:
    """Refuses requests and WebSocket handshakes whose headers are too large, before any route
    reads them (the rate limiter, outside it, counts these refusals too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resources = (scope.get("state") or {}).get("resources")
        if resources is not None and scope["type"] in ("http", "websocket"):
            try:
                check_headers(scope["headers"], resources.settings.limits)
            except Refusal as refusal:
                response = refusal.response_for(scope["path"])
                if scope["type"] == "http":
                    await response(scope, receive, send)
                else:
                    await deny_websocket(scope, receive, send, response)
                return
        await self.app(scope, receive, send)


async def deny_websocket(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
    """Refuse a WebSocket handshake: with the JSON refusal itself where the server can send an
    HTTP answer, else a close before accepting (the client sees a 403)."""
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": 1008})


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # open +1, close -1 (as signed bytes)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def json_depth(data: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest, in linear time and without
    recursion (json.loads recurses: 5,000 levels overflow it): strings are cut out, the
    brackets left become +1/-1 steps, and the deepest running sum is the depth."""
    steps = _STRING.sub(b"", data).translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(array("b", steps)), default=0)


def parse_json(data: bytes | str, limits: Limits, *, what: str = "The body") -> Any:
    """A JSON text as Python values, or a Refusal: not UTF-8, nested too deeply, not JSON."""
    if isinstance(data, str):
        raw = data.encode("utf-8", "surrogatepass")
    else:
        raw = data
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(400, f"{what} is not valid UTF-8") from None
    if json_depth(raw) > limits.max_json_depth:
        raise Refusal(400, f"{what} nests deeper than {limits.max_json_depth} levels")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise Refusal(400, f"{what} is not valid JSON") from None


async def body_chunks(
    receive: Receive, limits: Limits, *, max_bytes: int | None = None
) -> AsyncIterator[bytes]:
    """The pieces of a request body as they arrive, chunked or not; Refusal when it grows past
    `max_bytes` (413), when no piece comes within the read timeout, or when, after that long,
    it arrives slower than the minimum rate (408); ClientDisconnect when the client leaves."""
    timeout = limits.body_read_timeout_ms / 1000
    rate = limits.body_min_bytes_per_second
    start = time.monotonic()
    received = 0
    while True:
        # the next piece must come within the read timeout, and before the body so far has
        # taken longer than the grace (one timeout) plus its size at the minimum rate
        behind = start + timeout + received / rate - time.monotonic()
        try:
            message = await _receive_within(receive, min(timeout, max(behind, 0.0)))
        except TimeoutError:
            raise Refusal(408, "The request body arrived too slowly") from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body: bytes = message.get("body", b"")
        received += len(body)
        if max_bytes is not None and received > max_bytes:
            raise Refusal(413, f"Request body too large (at most {max_bytes} bytes)")
        if body:
            yield body
        if not message.get("more_body", False):
            return


async def _receive_within(receive: Receive, seconds: float) -> Message:
    async with asyncio.timeout(seconds):
        return await receive()


async def read_body(receive: Receive, limits: Limits, *, max_bytes: int) -> bytes:
    """The whole body, read as `body_chunks` reads it."""
    return b"".join([chunk async for chunk in body_chunks(receive, limits, max_bytes=max_bytes)])


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read, then whatever the client sends next
    (its disconnect)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
