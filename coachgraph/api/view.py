"""The GraphQL endpoint: Strawberry's view with our Context and coded refusals, behind a gate
that authenticates and reads the body within its limits (WebSocket protocols: websocket.py)."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from coachgraph.api import doors, graphiql
from coachgraph.api.auth import viewer_from_header, viewer_from_scope
from coachgraph.api.doors import Refusal
from coachgraph.api.websocket import LegacyWSHandler, TransportWSHandler
from coachgraph.config import Limits
from coachgraph.engine import remember
from coachgraph.errors import Unauthenticated
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.loaders import Loaders
from coachgraph.resolvers.policy import ANONYMOUS
from coachgraph.runtime import Resources
from coachgraph.schema.extensions import present_errors

VIEWER_KEY = "coachgraph.viewer"


def encode(data: object) -> bytes:
    """JSON as UTF-8 bytes: orjson, several times faster than json.dumps on large results;
    json.dumps for what orjson refuses (integers beyond 64 bits in a JSON scalar)."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


# Event payloads encoded lately, by the identity of their data (kept alive with it): the
# engine hands every watcher of an event the same result object (Engine.event)
_ENCODED: OrderedDict[int, tuple[object, bytes]] = OrderedDict()
_ENCODED_SIZE = 1_024


def encode_message(message: Any) -> bytes:
    """A protocol message; a `next`/`data` payload of plain data encoded once for all the
    subscribers it goes to, then framed with each one's id."""
    payload = message.get("payload") if isinstance(message, dict) else None
    if not (isinstance(payload, dict) and len(payload) == 1 and "data" in payload):
        return encode(message)
    head = {k: v for k, v in message.items() if k != "payload"}
    if not head:
        return encode(message)
    data = payload["data"]
    found = _ENCODED.get(id(data))
    if found is None or found[0] is not data:
        found = (data, encode(payload))
        remember(_ENCODED, id(data), found, _ENCODED_SIZE)
    return encode(head)[:-1] + b',"payload":' + found[1] + b"}"


class WebSocketAdapter(ASGIWebSocketAdapter):
    """Strawberry's adapter; messages encoded by `encode_message`, sent as text frames as the
    protocols require."""

    async def send_json(self, message: Any) -> None:
        try:
            await self.ws.send_text(encode_message(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view with our typed Context built per request, refusing in coded
    JSON (never text/plain) and closing WebSockets when their token expires."""

    limits = Limits()  # the app's, from its first request on (one view serves one app)
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    websocket_adapter_class = WebSocketAdapter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resources: Resources = scope["state"]["resources"]
        self.limits = resources.settings.limits
        if scope["type"] == "websocket":  # headers were bounded by doors.HeaderLimits
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope, receive))
        except Refusal as err:
            response = err.graphql_response()
        except HTTPException as err:
            response = _coded(err).graphql_response()
        await response(scope, receive, send)

    def encode_json(self, data: object) -> bytes:
        return encode(data)

    async def render_graphql_ide(self, request: Request) -> Response:
        return graphiql.page(request.url.path)  # served by the app, no CDN (api/graphiql.py)

    def parse_json(self, data: str | bytes) -> Any:
        """Bodies and GET parameters: UTF-8, nested no deeper than the limit, then JSON."""
        return doors.parse_json(data, self.limits)

    def decode_json(self, data: str | bytes) -> object:
        """WebSocket messages: bounded like bodies; a refusal reads as a non-JSON message."""
        try:
            if len(data) > self.limits.max_body_bytes:
                raise Refusal(413, "The message is too large")
            return doors.parse_json(data, self.limits, what="The message")
        except Refusal as err:
            raise json.JSONDecodeError(err.message, "", 0) from None

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, refusing a subscription: it allows them over GET and POST for its
        streaming transports (SSE, multipart), which do not come here, and would otherwise run
        one as a query."""
        allowed = OperationType.from_http(request_adapter.method) - {OperationType.SUBSCRIPTION}
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as err:
            if err.operation_type is OperationType.SUBSCRIPTION:
                raise Refusal(400, "Subscriptions need a WebSocket (or SSE, later)") from None
            raise Refusal(400, err.as_http_error_reason(request_adapter.method)) from None
        except CannotGetOperationTypeError as err:
            raise Refusal(400, err.as_http_error_reason()) from None
        except MissingQueryError:
            raise Refusal(400, "No GraphQL query found in the request") from None

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        try:
            return await super().parse_http_body(request)
        except AttributeError:  # it parsed, but to a string, number, null or a list of such
            raise Refusal(400, "The body must be a JSON object (or a list of them)") from None

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
        # Schema.process_errors has presented every error the engine returns; this is the
        # last door before the client, so nothing unmasked leaves even if a path skipped it
        if result.errors:
            present_errors(result.errors)
        return await super().process_result(request, result)


def _coded(err: HTTPException) -> Refusal:
    """Strawberry's own refusals (method, content type, batching...) with a code."""
    return Refusal(
        err.status_code, err.reason, "NOT_FOUND" if err.status_code == 404 else "BAD_USER_INPUT"
    )


class Gate:
    """Authenticates HTTP requests once and refuses oversize bodies (rate limits: ratelimit.py)."""

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
        # the whole body (at most max_body_bytes, chunked or not) is read here, against the
        # read timeout and minimum rate, before the view parses it or touches the database
        limits: Limits = scope["state"]["resources"].settings.limits
        try:
            body = await doors.read_body(receive, limits, max_bytes=limits.max_body_bytes)
        except Refusal as err:
            await err.graphql_response()(scope, receive, send)
            return
        except ClientDisconnect:
            return
        await self.app(scope, doors.replay(body, receive), send)

    def check(self, scope: Scope) -> Response | None:
        resources: Resources = scope["state"]["resources"]
        headers = {k: v for k, v in scope["headers"] if k in _WANTED}
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > resources.settings.limits.max_body_bytes:
            return Refusal(413, "Request body too large").graphql_response()
        try:  # decoded once per request: the rate limiter may have done it already
            viewer = viewer_from_scope(scope, resources.jwt_secret)
        except Unauthenticated as err:
            return Refusal(401, err.message, err.code).graphql_response()
        scope[VIEWER_KEY] = viewer
        return None


_WANTED = frozenset({b"content-length"})
