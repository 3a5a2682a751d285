"""WebSocket protocols (graphql-transport-ws and legacy graphql-ws) as this API speaks them:
a connection lives no longer than its token (closed with 4401 at expiry, whatever it is doing),
and every error, the subscription limit's included, carries extensions.code."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from graphql import GraphQLError
from strawberry.schema.schema import StreamResult
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyConnectionInitMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    OperationMessage,
    StartMessage,
)
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from coachgraph.api.documents import DocumentError, Trusted, trusted_query
from coachgraph.resolvers.context import Context
from coachgraph.schema.extensions import present_error

TOKEN_EXPIRED = 4401
_EXPIRED_REASON = "Token expired; reconnect with a fresh token"


def _expired(context: Context) -> bool:
    expires_at = context.viewer.expires_at
    return expires_at is not None and time.time() >= expires_at


# the legacy protocol runs queries and mutations too (a `data`, then `complete`)
_ANY_OPERATION = (OperationType.QUERY, OperationType.MUTATION, OperationType.SUBSCRIPTION)


def _untrusted(view: Any, payload: Any) -> dict[str, Any] | None:
    """Under a trusted-documents manifest, the coded error refusing an operation that is not
    in it (the payload's query replaced by the manifest's when it is named by its hash)."""
    trusted: Trusted | None = getattr(view, "trusted", None)
    if trusted is None or not isinstance(payload, dict):
        return None
    extensions = payload.get("extensions")
    query = payload.get("query")
    try:
        payload["query"] = trusted_query(
            query if isinstance(query, str) else None,
            extensions if isinstance(extensions, dict) else None,
            trusted,
        )
    except DocumentError as err:
        return {"message": err.message, "extensions": {"code": err.code}}
    return None


def _limit_error(cap: int) -> dict[str, Any]:
    return {
        "message": f"Subscription limit reached: at most {cap} operations at once",
        "extensions": {"code": "RATE_LIMITED"},
    }


class _TokenClock:
    """Runs `expire` when the viewer's token expires: the connection lives no longer than it.
    Both protocol handlers delegate their handle / connection_init / message hooks here."""

    def __init__(self, expire: Callable[[], Awaitable[None]]) -> None:
        self.expire = expire
        self.task: asyncio.Task[None] | None = None

    async def outlive(self, handling: Awaitable[None]) -> None:
        """Await the handler's whole run, then stop the clock however it ended."""
        try:
            await handling
        finally:
            await self.stop()

    def start(self, acknowledged: bool, context: Context) -> None:
        """After connection_init: once acknowledged, ring at the token's expiry (once)."""
        expires_at = context.viewer.expires_at
        if not acknowledged or expires_at is None or self.task is not None:
            return
        expire = self.expire

        async def ring() -> None:
            await asyncio.sleep(max(0.0, expires_at - time.time()))
            await expire()

        self.task = asyncio.create_task(ring())

    async def refuses(self, acknowledged: bool, context: Context) -> bool:
        """Whether a message must be refused: an operation after expiry closes, not runs."""
        if acknowledged and _expired(context):
            await self.expire()
            return True
        return False

    async def stop(self) -> None:
        """Cancel the timer and wait for it: it may be closing the socket right now."""
        task, self.task = self.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws: closes with 4401 at token expiry, whatever runs; every error is
    an `error` message carrying extensions.code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = _TokenClock(self.expire)

    async def handle(self) -> None:
        await self.clock.outlive(super().handle())

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        self.clock.start(self.connection_acknowledged, self.context)

    async def handle_message(self, message: Message) -> None:
        if not await self.clock.refuses(self.connection_acknowledged, self.context):
            await super().handle_message(message)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        cap = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and cap is not None
            and len(self.operations) >= cap
            and message["id"] not in self.operations
        ):
            error: Any = {"id": message["id"], "type": "error", "payload": [_limit_error(cap)]}
            await self.send_message(error)
            return
        refused = _untrusted(self.view, message.get("payload"))
        if refused is not None and self.connection_acknowledged:
            error = {"id": message["id"], "type": "error", "payload": [refused]}
            await self.send_message(error)
            return
        await super().handle_subscribe(message)

    async def _handle_pre_execution_error(
        self, operation: Operation[Context, None], result: PreExecutionError
    ) -> None:
        # Strawberry closes the socket (4400) on a syntax error or an unknown operation name,
        # and the error carries no code: answer an `error` message with coded errors instead
        await operation.send_initial_errors([present_error(e) for e in result.errors or ()])

    async def _send_result_stream(
        self, operation: Operation[Context, None], result_source: StreamResult
    ) -> None:
        try:
            await super()._send_result_stream(operation, result_source)
        except GraphQLError as err:  # a syntax error raised, not returned, by the parser cache
            await operation.send_initial_errors([present_error(err)])

    async def expire(self) -> None:
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        with contextlib.suppress(RuntimeError):  # already closed
            await self.websocket.close(TOKEN_EXPIRED, _EXPIRED_REASON)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """Legacy graphql-ws, likewise: 4401 at token expiry, coded errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = _TokenClock(self.expire)

    async def handle(self) -> None:
        await self.clock.outlive(super().handle())

    async def handle_connection_init(self, message: LegacyConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        self.clock.start(self.connection_acknowledged, self.context)

    async def handle_message(self, message: OperationMessage) -> None:
        if not await self.clock.refuses(self.connection_acknowledged, self.context):
            await super().handle_message(message)

    async def handle_start(self, message: StartMessage) -> None:
        cap = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and cap is not None
            and len(self.tasks) >= cap
            and message["id"] not in self.tasks
        ):
            error: Any = {"type": "error", "id": message["id"], "payload": _limit_error(cap)}
            await self.send_message(error)
            return
        refused = _untrusted(self.view, message.get("payload"))
        if refused is not None and self.connection_acknowledged:
            error = {"type": "error", "id": message["id"], "payload": refused}
            await self.send_message(error)
            return
        await super().handle_start(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        """Strawberry's, running queries and mutations as well as subscriptions (the protocol
        allows them; gql's client fetches the schema so): `data`, then `complete`."""
        try:
            source = await self.schema.stream(
                query=query,
                variable_values=variables,
                operation_name=operation_name,
                context_value=self.context,
                root_value=self.root_value,
                allowed_operation_types=_ANY_OPERATION,
            )
            self.subscriptions[operation_id] = source
            first = True
            async for result in source:
                if first and isinstance(result, PreExecutionError):
                    await self._send_error(operation_id, present_error(result.errors[0]))  # type: ignore[index]
                    return
                await self.send_data_message(result, operation_id)  # type: ignore[arg-type]
                first = False
            await self.send_message({"type": "complete", "id": operation_id})
        except GraphQLError as err:  # a syntax error raised, not returned, by the parser cache
            await self._send_error(operation_id, present_error(err))
        except asyncio.CancelledError:
            await self.send_message({"type": "complete", "id": operation_id})
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)

    async def _send_error(self, operation_id: str, error: GraphQLError) -> None:
        message: Any = {"type": "error", "id": operation_id, "payload": error.formatted}
        await self.send_message(message)

    async def expire(self) -> None:
        await self.cleanup()
        with contextlib.suppress(RuntimeError):
            await self.websocket.close(TOKEN_EXPIRED, _EXPIRED_REASON)
