"""Rate limits on every door, per client, shared by the replicas through Redis when it is set.

Doors: HTTP (GraphQL, and any path not named below), ingest, media routes, WebSocket handshakes
and WebSocket operations (`subscribe`, legacy `start`); each has its own budget (Limits). A
client is its bearer token's subject (a token without one: a digest of the token), else its
address: the peer's, or with a peer in COACHGRAPH_TRUSTED_PROXIES the rightmost untrusted
address of X-Forwarded-For. `RateLimits` wraps the whole app and counts a request before
anything else runs, so refusals (401, 403, 413...) spend the budget too. Counters
(`coachgraph/limiter.py`) are the `limits` library's sliding windows, in Redis with REDIS_URL
(in this process while Redis does not answer: the API stays up), in memory otherwise. Open
WebSocket connections per client are counted in each process.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coachgraph.api.auth import viewer_from_header, viewer_from_scope
from coachgraph.api.doors import Refusal, deny_websocket
from coachgraph.api.wire import response_type
from coachgraph.config import IPNetwork, Limits
from coachgraph.errors import Unauthenticated
from coachgraph.limiter import Door, Limiter

if TYPE_CHECKING:
    from coachgraph.runtime import Resources


EXEMPT = frozenset({"/healthz", "/metrics"})  # probes and scrapers poll these
CODE = "RATE_LIMITED"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- who the client is ------------------------------------------------------------------------


def client_address(scope: Scope, trusted: tuple[IPNetwork, ...], *, max_hops: int) -> str:
    """The peer address; behind trusted proxies, the rightmost untrusted X-Forwarded-For hop
    among the last `max_hops`."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not trusted:
        return peer
    current = _ip(peer)
    if current is None or not _within(current, trusted):
        return peer
    hops = [
        hop
        for name, value in scope["headers"]
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]
    for hop in reversed(hops[-max_hops:]):
        address = _ip(hop)
        if address is None:  # garbage a trusted proxy passed on: the one who passed it counts
            break
        current = address
        if not _within(address, trusted):
            break
    return str(current)


def client_key(
    secret: str,
    authorization: str | None,
    address: str,
    *,
    max_token_chars: int,
    scope: Scope | None = None,
) -> str:
    """The token's subject, a digest of a valid token without one, else the address; an invalid
    token (or an Authorization header longer than `max_token_chars`, not decoded) counts
    against the address it came from. With the request's `scope`, the header is decoded once
    for the request (the gate reads the same decoding)."""
    if authorization and len(authorization) <= max_token_chars:
        try:
            viewer = (
                viewer_from_header(secret, authorization)
                if scope is None
                else viewer_from_scope(scope, secret)
            )
        except Unauthenticated:
            return f"ip:{address}"
        if viewer.subject:
            return f"sub:{viewer.subject}"
        if viewer.role is not None:  # e.g. an admin token naming nobody: one bucket per token
            token = authorization.partition(" ")[2].strip()
            return "token:" + hashlib.sha256(token.encode()).hexdigest()[:32]
    return f"ip:{address}"


def _ip(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def client_of(scope: Scope, resources: Resources) -> str:
    """The client an HTTP request counts against, as the middleware counted it."""
    limits = resources.settings.limits
    address = client_address(
        scope, resources.settings.trusted_proxies, max_hops=limits.max_forwarded_hops
    )
    return client_key(
        resources.jwt_secret,
        _header(scope, b"authorization"),
        address,
        max_token_chars=limits.max_token_chars,
        scope=scope,
    )


async def spend(scope: Scope, resources: Resources, cost: int) -> int | None:
    """Spend `cost` more of the request's client's HTTP budget (the further operations of a
    batch): None when they may run, else the seconds until they may (Retry-After)."""
    if cost <= 0:
        return None
    return await resources.limiter.hit(Door.HTTP, client_of(scope, resources), cost)


# --- refusals ---------------------------------------------------------------------------------


def door_of(path: str) -> Door | None:
    if path in EXEMPT:
        return None
    if path.startswith("/ingest/"):
        return Door.INGEST
    if path.startswith("/media/"):
        return Door.MEDIA
    return Door.HTTP


def too_many(
    path: str, retry_after: int, message: str, media_type: str | None = None
) -> JSONResponse:
    """429 in the shape the path answers errors in, with Retry-After in whole seconds."""
    refusal = Refusal(429, message, CODE)
    headers = {"Retry-After": str(retry_after)}
    return refusal.response_for(path, headers=headers, media_type=media_type)


# --- the middleware ---------------------------------------------------------------------------


class RateLimits:
    """Counts every HTTP request, WebSocket handshake and WebSocket operation against its
    client's budget before the app sees it, and answers 429 (or an operation error) past it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resources: Resources | None = (scope.get("state") or {}).get("resources")
        if resources is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan, or no backends to limit yet
            return
        door = door_of(scope["path"])
        if door is None:
            await self.app(scope, receive, send)
            return
        settings = resources.settings
        limits = settings.limits
        address = client_address(
            scope, settings.trusted_proxies, max_hops=limits.max_forwarded_hops
        )
        if scope["type"] == "http":
            authorization = _header(scope, b"authorization")
            key = client_key(
                resources.jwt_secret,
                authorization,
                address,
                max_token_chars=limits.max_token_chars,
                scope=scope,
            )
            retry = await resources.limiter.hit(door, key)
            if retry is None:
                await self.app(scope, receive, send)
            else:
                media_type = response_type(_header(scope, b"accept"))
                refusal = too_many(scope["path"], retry, "Too many requests; slow down", media_type)
                await refusal(scope, receive, send)
            return
        await self._websocket(scope, receive, send, resources, f"ip:{address}")

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, resources: Resources, peer: str
    ) -> None:
        limiter = resources.limiter
        retry = await limiter.hit(Door.WS_CONNECT, peer)
        message = "Too many WebSocket connection attempts; slow down"
        if retry is None and not limiter.connections.acquire(peer):
            retry, message = 1, "Too many open WebSocket connections"
        if retry is not None:
            await deny_websocket(scope, receive, send, too_many(scope["path"], retry, message))
            return
        socket = _Socket(limiter, resources.jwt_secret, peer, send, resources.settings.limits)
        try:
            await self.app(scope, socket.wrap(receive), socket.send)
        finally:
            limiter.connections.release(socket.client)


class _Socket:
    """One WebSocket connection: who its client is, and its operations counted as they come."""

    def __init__(
        self, limiter: Limiter, secret: str, client: str, send: Send, limits: Limits
    ) -> None:
        self.limiter = limiter
        self.secret = secret
        self.peer = client
        self.client = client  # the peer until connection_init names a token
        self._send = send
        self.closed = False
        # larger messages are left to the view, which refuses them
        self.max_text = limits.max_body_bytes
        self.max_token_chars = limits.max_token_chars

    async def send(self, message: Message) -> None:
        if not self.closed:  # once we closed it, the app's last words go nowhere
            await self._send(message)

    def wrap(self, receive: Receive) -> Receive:
        async def receive_counted() -> Message:
            while True:
                message = await receive()
                operation = _operation(message, self.max_text)
                if operation is None:
                    return message
                kind, op_id, payload = operation
                if kind == "connection_init":
                    if not self._identify(payload):
                        await self._close(4429, "RATE_LIMITED: too many open connections")
                        return {"type": "websocket.disconnect", "code": 4429}
                    return message
                retry = await self.limiter.hit(Door.WS_OPERATION, self.client)
                if retry is None:
                    return message
                await self._refuse(kind, op_id, retry)

        return receive_counted

    def _identify(self, payload: Any) -> bool:
        """Count the connection against its token's client from now on; False past the cap."""
        header = None
        if isinstance(payload, dict):
            found = payload.get("authorization") or payload.get("Authorization")
            header = found if isinstance(found, str) else None
        client = client_key(
            self.secret,
            header,
            self.peer.removeprefix("ip:"),
            max_token_chars=self.max_token_chars,
        )
        if client == self.client:
            return True
        if not self.limiter.connections.acquire(client):
            return False
        self.limiter.connections.release(self.client)
        self.client = client
        return True

    async def _refuse(self, kind: str, op_id: Any, retry: int) -> None:
        error = {
            "message": "Too many operations; slow down",
            "extensions": {"code": CODE, "retryAfter": retry},
        }
        # graphql-transport-ws sends a list of errors; legacy graphql-ws one error
        payload = [error] if kind == "subscribe" else error
        text = json.dumps({"type": "error", "id": op_id, "payload": payload})
        with contextlib.suppress(OSError, RuntimeError):  # the client has gone
            await self._send({"type": "websocket.send", "text": text})

    async def _close(self, code: int, reason: str) -> None:
        self.closed = True
        with contextlib.suppress(OSError, RuntimeError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


_COUNTED = frozenset({"connection_init", "subscribe", "start"})


def _operation(message: Message, max_text: int) -> tuple[str, Any, Any] | None:
    """(type, id, payload) of a client message that opens a connection or an operation."""
    if message["type"] != "websocket.receive":
        return None
    text = message.get("text")
    if not isinstance(text, str) or len(text) > max_text:
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # the app answers malformed messages itself
        return None
    if not isinstance(parsed, dict):
        return None
    kind = parsed.get("type")
    if kind not in _COUNTED:
        return None
    return str(kind), parsed.get("id"), parsed.get("payload")
