"""The Starlette application: lifespan opens the backends, routes serve GraphQL and health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypedDict

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute

from coachgraph.api import ingest, media_routes
from coachgraph.api.health import healthz
from coachgraph.api.ratelimit import RateLimits
from coachgraph.api.resources import Resources, open_resources
from coachgraph.api.view import Gate, GraphQLView
from coachgraph.config import Settings
from coachgraph.schema.schema import build_schema


class State(TypedDict):
    resources: Resources


def create_app(
    settings: Settings,
    *,
    create_secret: bool = False,
    count_statements: bool = False,
    start_projector: bool = True,
    on_ready: Callable[[Resources], Awaitable[None]] | None = None,
) -> Starlette:
    """The ASGI app; nothing connects until the lifespan starts."""
    schema = build_schema(settings.limits)
    view = GraphQLView(schema, graphql_ide="graphiql" if settings.graphiql else None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        resources = await open_resources(
            settings,
            create_secret=create_secret,
            count_statements=count_statements,
            start_projector=start_projector,
        )
        try:
            if on_ready is not None:
                await on_ready(resources)
            yield {"resources": resources}
        finally:
            await resources.close()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/graphql", Gate(view)),
            WebSocketRoute("/graphql", view),
            *media_routes.routes,
            *ingest.routes,
        ],
        # every door is counted before anything else runs, refusals included
        middleware=[Middleware(RateLimits)],
        lifespan=lifespan,
    )
