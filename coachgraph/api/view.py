"""The GraphQL endpoint: an authentication and rate-limit gate in front of Strawberry's view."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from coachgraph.api.auth import viewer_from_header
from coachgraph.api.resources import Resources
from coachgraph.errors import Unauthenticated
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.loaders import Loaders
from coachgraph.resolvers.policy import ANONYMOUS
from coachgraph.schema.extensions import present_error

VIEWER_KEY = "coachgraph.viewer"


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view with our typed Context built per request."""

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        resources: Resources = request.state.resources
        viewer = request.scope.get(VIEWER_KEY, ANONYMOUS)
        context = Context(
            settings=resources.settings,
            db=resources.db,
            viewer=viewer,
            graph=resources.graph,
            media=resources.media,
            broker=resources.broker,
            search=resources.search,
            base_url=resources.settings.public_url or str(request.base_url),
        )
        if isinstance(request, WebSocket):
            context.secret = resources.jwt_secret
            context.close_connection = _closer(request)
        return context

    async def on_ws_connect(self, context: Context) -> None:
        """Authenticate the connection from `connection_init`'s `authorization`."""
        params = context.connection_params or {}
        header = params.get("authorization") or params.get("Authorization")
        try:
            viewer = viewer_from_header(context.secret, header if isinstance(header, str) else None)
        except Unauthenticated as err:
            raise ConnectionRejectionError({"message": err.message, "code": err.code}) from None
        context.viewer = viewer
        context.loaders = Loaders(context.db, viewer)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        # Errors raised before the operation hooks run (e.g. parse errors in the parser
        # cache) bypass the ErrorCodes extension; present them here too.
        if result.errors:
            result.errors = [present_error(e) for e in result.errors]
        return await super().process_result(request, result)


def _closer(websocket: WebSocket) -> Callable[[int, str], Awaitable[None]]:
    async def close(code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError):  # already closed
            await websocket.close(code=code, reason=reason)

    return close


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
    )


class Gate:
    """Authenticates HTTP requests once, refuses oversize bodies, and applies the rate limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> Response | None:
        resources: Resources = scope["state"]["resources"]
        headers = {k: v for k, v in scope["headers"] if k in _WANTED}
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > resources.settings.limits.max_body_bytes:
            return error_response(413, "BAD_USER_INPUT", "Request body too large")
        auth = headers.get(b"authorization")
        try:
            viewer = viewer_from_header(
                resources.jwt_secret, auth.decode("latin-1") if auth else None
            )
        except Unauthenticated as err:
            return error_response(401, err.code, err.message)
        scope[VIEWER_KEY] = viewer
        client: Any = scope.get("client") or ("unknown", 0)
        key = viewer.subject or (viewer.role.value if viewer.role else f"ip:{client[0]}")
        if not resources.limiter.allow(key):
            return error_response(429, "RATE_LIMITED", "Too many requests; slow down")
        return None


_WANTED = frozenset({b"authorization", b"content-length"})
