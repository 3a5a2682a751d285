"""The Starlette application: lifespan opens the backends, routes serve GraphQL and health."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected

from coachgraph import tracing
from coachgraph.api import export_routes, graphiql, ingest, live_page, media_routes, wearable_files
from coachgraph.api.documents import load_manifest
from coachgraph.api.doors import HeaderLimits, Refusal
from coachgraph.api.gate import Gate
from coachgraph.api.health import healthz
from coachgraph.api.metrics import Metrics, RequestIds
from coachgraph.api.metrics import routes as metrics_routes
from coachgraph.api.ratelimit import RateLimits
from coachgraph.api.view import GraphQLView
from coachgraph.config import Settings
from coachgraph.observe import QuietDisconnects
from coachgraph.runtime import Resources, open_resources
from coachgraph.schema.schema import build_schema


class State(TypedDict):
    resources: Resources


def tune_gc(young_threshold: int) -> None:
    """Freeze what start-up built (schema, projection, pools) out of every later collection,
    and let young collections wait for `young_threshold` allocations (the older generations
    keep their defaults)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


def create_app(
    settings: Settings,
    *,
    create_secret: bool = False,
    count_statements: bool = False,
    start_projector: bool = True,
    on_ready: Callable[[Resources], Awaitable[None]] | None = None,
    tracer_provider: Any = None,
) -> Starlette:
    """The ASGI app; nothing connects until the lifespan starts. With tracing on, spans go to
    `tracer_provider` (tests), else to OTLP (tracing.py)."""
    _quiet_disconnects()
    provider = tracing.provider_for(settings, tracer_provider)
    metrics = Metrics(settings.limits.metrics_max_operations)
    schema = build_schema(
        settings.limits,
        compiled=settings.compiled_execution,
        observers=[metrics.operation],
        traced=provider is not None,
    )
    metrics.engine_stats = schema.engine.stats  # type: ignore[attr-defined]
    trusted = load_manifest(settings.trusted_documents) if settings.trusted_documents else None
    view = GraphQLView(
        schema, graphql_ide="graphiql" if settings.graphiql else None, trusted=trusted
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        if provider is not None:
            tracing.start(provider)
        try:
            resources = await open_resources(
                settings,
                create_secret=create_secret,
                count_statements=count_statements,
                start_projector=start_projector,
            )
            metrics.resources = resources
            if settings.gc_tuning:
                tune_gc(settings.limits.gc_young_threshold)
            try:
                if on_ready is not None:
                    await on_ready(resources)
                yield {"resources": resources}
            finally:
                metrics.resources = None
                await resources.close()
        finally:
            if provider is not None:
                tracing.stop(provider)

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *metrics_routes,
            Route("/graphql", Gate(view)),
            WebSocketRoute("/graphql", view),
            *media_routes.routes,
            *export_routes.routes,
            *ingest.routes,
            *wearable_files.routes,
            *live_page.routes,
            *(graphiql.routes if settings.graphiql else []),
        ],
        middleware=_middleware(provider),
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.schema = schema  # its engine's plan cache and counters (schema.engine.stats())
    app.state.metrics = metrics
    return app


def _quiet_disconnects() -> None:
    """A client that closes its WebSocket under a running operation is ordinary: strawberry
    logged it as "Exception in worker task" with a traceback. Other task errors still log."""
    logger = logging.getLogger("strawberry.ws.task")
    if not any(isinstance(f, QuietDisconnects) for f in logger.filters):
        logger.addFilter(QuietDisconnects(WebSocketDisconnected, WebSocketDisconnect))


def _middleware(provider: Any) -> list[Middleware]:
    """Outermost first: the trace's server span (when tracing); each request's id (logs,
    X-Request-Id) and timing (metrics); then every door counted before anything else runs,
    refusals included; then no route reads a header before their sizes are bounded."""
    traced = []
    if provider is not None:
        otel, options = tracing.asgi_middleware(provider)
        traced.append(Middleware(otel, **options))
    return [*traced, Middleware(RequestIds), Middleware(RateLimits), Middleware(HeaderLimits)]


_HTTP_CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND", 429: "RATE_LIMITED"}


async def _http_error(request: Request, err: Exception) -> Response:
    """Starlette's own refusals (no such route, a method the route does not take) as coded
    JSON, never its plain-text defaults (API.md: every refusal, at any layer)."""
    assert isinstance(err, HTTPException)
    code = _HTTP_CODES.get(err.status_code, "BAD_USER_INPUT")
    refusal = Refusal(err.status_code, str(err.detail), code)
    return refusal.response_for(request.url.path, headers=dict(err.headers or {}))


async def _internal_error(request: Request, err: Exception) -> Response:
    """An unexpected failure outside GraphQL's own masking: coded JSON, the message masked
    (Starlette logs the exception and re-raises it after this answer)."""
    return Refusal(500, "Internal server error", "INTERNAL").response_for(request.url.path)
