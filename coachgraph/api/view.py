"""The GraphQL endpoint: Strawberry's view with our Context and coded refusals, behind a gate
(gate.py) that authenticates and reads the body within its limits. On the same /graphql: GraphQL over
HTTP in application/json or application/graphql-response+json (wire.py), batches, automatic
persisted queries and trusted documents (documents.py), subscriptions over Server-Sent Events
and multipart HTTP, and the WebSocket protocols (websocket.py)."""

from __future__ import annotations

import json
from typing import Any, cast

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, GraphQLRequestProtocol
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.streaming import HTTPStreamTransport
from strawberry.http.types import HTTPMethod
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from coachgraph.api import doors, graphiql, ratelimit, wire
from coachgraph.api.auth import viewer_from_header
from coachgraph.api.documents import DocumentError, Resolved, Trusted, resolve
from coachgraph.api.doors import Refusal
from coachgraph.api.encoding import WebSocketAdapter, encode
from coachgraph.api.gate import ERASED, VIEWER_KEY, media_type
from coachgraph.api.websocket import LegacyWSHandler, TransportWSHandler
from coachgraph.config import Limits
from coachgraph.errors import Unauthenticated
from coachgraph.lifecycle.audit import AuditBatch
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.loaders import Loaders
from coachgraph.resolvers.policy import ANONYMOUS
from coachgraph.runtime import Resources
from coachgraph.schema.extensions import present_errors

AUDIT_KEY = "coachgraph.audit"


PROTOCOLS = (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    GRAPHQL_SSE_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
_NO_STREAM = (
    "Subscriptions need a WebSocket, Server-Sent Events (Accept: text/event-stream) or "
    "multipart HTTP (Accept: multipart/mixed;subscriptionSpec=1.0)"
)


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view with our typed Context built per request, refusing in coded
    JSON (never text/plain) and closing WebSockets when their token expires."""

    limits = Limits()  # the app's, from its first request on (one view serves one app)
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    websocket_adapter_class = WebSocketAdapter

    def __init__(
        self, schema: Any, *, graphql_ide: Any = "graphiql", trusted: Trusted | None = None
    ) -> None:
        super().__init__(schema, graphql_ide=graphql_ide, subscription_protocols=PROTOCOLS)
        self.trusted = trusted  # with a manifest, only its operations run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resources: Resources = scope["state"]["resources"]
        self.limits = resources.settings.limits
        if scope["type"] == "websocket":  # headers were bounded by doors.HeaderLimits
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope, receive))
        except Refusal as err:
            response = err.graphql_response(media_type=media_type(scope))
        except HTTPException as err:
            response = _coded(err).graphql_response(media_type=media_type(scope))
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

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """GraphiQL for a browser's GET; not for a GET naming a persisted query by its hash
        (Apollo Client sends those with `Accept: */*` and no `query`)."""
        params = request.query_params
        return super().should_render_graphql_ide(request) and params.get("extensions") is None

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        return wire.SubResponse(
            wire.response_type(request.headers.get("accept")),
            request.headers.get("if-none-match"),
        )

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        if isinstance(sub_response, wire.SubResponse):
            response.headers["content-type"] = sub_response.negotiated
            response.headers["vary"] = "Accept"  # the media type, and so the status, depend on it
            return wire.finish(response, sub_response)
        return response

    def _validate_batch_request(
        self, request_data: list[GraphQLRequestData], protocol: GraphQLRequestProtocol
    ) -> None:
        if protocol != "http":
            raise Refusal(400, "A batch cannot be streamed; send its operations one by one")
        if not request_data:
            raise Refusal(400, "An empty batch: send at least one operation")
        cap = self.limits.max_batch_size
        if len(request_data) > cap:
            raise Refusal(
                413,
                f"A batch may hold at most {cap} operations; this one holds {len(request_data)}",
            )

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        try:
            return await self._execute_operation(
                request, request_adapter, request_data, context, sub_response
            )
        finally:  # the request's audit events, all its operations', in one write
            batch: AuditBatch | None = request.scope.get(AUDIT_KEY)
            if batch is not None:
                await batch.flush(request.state.resources.db)

    async def _execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        if isinstance(request_data, list):
            return await self._execute_batch(request, request_adapter, request_data, sub_response)
        transport = self._get_stream_transport(request_data.protocol)
        if transport is not None:
            return await self._stream(
                request, request_adapter, request_data, context, sub_response, transport
            )
        return await self._execute_one(
            request, request_adapter, sub_response, context, request_data, single=True
        )

    async def _execute_batch(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        batch: list[GraphQLRequestData],
        sub_response: Response,
    ) -> list[ExecutionResult]:
        """Each operation counted by the rate limiter as a request (the middleware counted the
        first), run in order, each with its own Context (fresh loaders: a query after a mutation
        reads what it wrote) and its own budget."""
        resources: Resources = request.state.resources
        retry = await ratelimit.spend(request.scope, resources, len(batch) - 1)
        if retry is not None:
            raise Refusal(
                429,
                f"Too many requests: this batch counts as {len(batch)}; slow down",
                ratelimit.CODE,
                headers={"Retry-After": str(retry)},
            )
        results = []
        for request_data in batch:
            context = await self.get_context(request, sub_response)
            try:
                result = await self._execute_one(
                    request, request_adapter, sub_response, context, request_data, single=False
                )
            except Refusal as err:
                error = GraphQLError(err.message, extensions={"code": err.code})
                result = wire.refused(error)
            results.append(result)
        return results

    async def _execute_one(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        request_data: GraphQLRequestData,
        *,
        single: bool,
    ) -> ExecutionResult:
        """One operation: its document resolved (persisted or trusted), run, remembered when
        it named a new persisted query, and, alone in its request, given its status."""
        media = sub_response.negotiated if isinstance(sub_response, wire.SubResponse) else None
        resources: Resources = request.state.resources
        try:
            resolved = await self._resolve(request, request_data)
        except DocumentError as err:
            if single:
                sub_response.status_code = (
                    err.status if media == wire.GRAPHQL_RESPONSE else err.json_status
                )
            return wire.refused(err.as_graphql_error())
        request_data.query = resolved.query
        result = await self.execute_single(
            request, request_adapter, sub_response, context, None, request_data
        )
        if resolved.learn and resolved.query and not isinstance(result, PreExecutionError):
            await resources.documents.put(resolved.learn, resolved.query)
        if not single:
            return result
        if media == wire.GRAPHQL_RESPONSE and wire.is_request_error(result):
            sub_response.status_code = wire.status_of(result)
        elif self._cacheable(request_adapter.method, request, resolved, result):
            assert isinstance(sub_response, wire.SubResponse)
            sub_response.max_age = self.limits.persisted_get_max_age_seconds
        return result

    def _cacheable(
        self, method: HTTPMethod, request: Request, resolved: Resolved, result: ExecutionResult
    ) -> bool:
        """A persisted query over GET (GET runs queries only), anonymous, without errors."""
        return (
            method == "GET"
            and resolved.persisted
            and not result.errors
            and request.headers.get("authorization") is None
        )

    async def _resolve(self, request: Request, request_data: GraphQLRequestData) -> Resolved:
        resources: Resources = request.state.resources
        return await resolve(
            request_data.query,
            request_data.extensions,
            store=resources.documents,
            trusted=self.trusted,
        )

    async def _stream(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData,
        context: Context,
        sub_response: Response,
        transport: HTTPStreamTransport,
    ) -> SubscriptionExecutionResult:
        """A subscription (or, over SSE, any operation) streamed over HTTP: the same document
        rules, Context, policy and resume (`after`) as over WebSocket, and counted as one of its
        client's open connections (the WebSocket cap) while it runs."""
        resources: Resources = request.state.resources
        try:
            resolved = await self._resolve(request, request_data)
        except DocumentError as err:
            raise Refusal(err.status, err.message, err.code) from None
        if resolved.learn and resolved.query:
            await resources.documents.put(resolved.learn, resolved.query)
        connections = resources.limiter.connections
        client = ratelimit.client_of(request.scope, resources)
        if not connections.room(client):
            raise Refusal(429, "Too many open subscriptions; close one first", ratelimit.CODE)
        allowed = OperationType.from_http(request_adapter.method)
        source = await self.schema.stream(
            resolved.query,
            variable_values=request_data.variables,
            context_value=context,
            operation_name=request_data.operation_name,
            operation_extensions=request_data.extensions,
            allowed_operation_types=transport.allowed_operation_types(allowed),
        )
        stream = wire.bounded_stream(
            source,
            expires_at=context.viewer.expires_at,
            acquire=lambda: connections.acquire(client),
            release=lambda: connections.release(client),
        )
        return cast("SubscriptionExecutionResult", stream)

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
                raise Refusal(400, _NO_STREAM) from None
            if request_adapter.method == "GET":  # GraphQL over HTTP: a mutation over GET
                reason = err.as_http_error_reason(request_adapter.method)
                raise Refusal(405, reason, headers={"Allow": "POST"}) from None
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
            leaderboards=resources.leaderboards,
            base_url=resources.settings.public_url or str(request.base_url),
            lifecycle=resources.lifecycle,
        )
        if resources.lifecycle is None:
            pass
        elif isinstance(request, WebSocket):  # no end to flush at: written as recorded
            context.audit = AuditBatch(resources.jwt_secret, eager_db=resources.db)
        else:  # one batch per request, a batch's operations' too
            context.audit = request.scope.setdefault(AUDIT_KEY, AuditBatch(resources.jwt_secret))
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
        if context.lifecycle is not None and viewer.athlete_id in context.lifecycle.erased:
            raise ConnectionRejectionError({"message": ERASED, "code": "UNAUTHENTICATED"})
        context.viewer = viewer
        context.loaders = Loaders(context.db, viewer)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        # Schema.process_errors has presented every error the engine returns; this is the
        # last door before the client, so nothing unmasked leaves even if a path skipped it
        if result.errors:
            present_errors(result.errors)
        processed = await super().process_result(request, result)
        if wire.response_type(
            request.headers.get("accept")
        ) == wire.GRAPHQL_RESPONSE and wire.is_request_error(result):
            processed.pop("data", None)  # a request error has no data at all
        return processed


def _coded(err: HTTPException) -> Refusal:
    """Strawberry's own refusals (method, content type, batching...) with a code."""
    return Refusal(
        err.status_code, err.reason, "NOT_FOUND" if err.status_code == 404 else "BAD_USER_INPUT"
    )
