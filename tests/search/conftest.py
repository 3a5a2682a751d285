"""One search contract suite over both backends: Postgres always; Meilisearch when MEILI_URL
names a running server (each session writes its own index and deletes it afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.runtime import Resources
from coachgraph.stores.db import Database
from tests.conftest import GraphQLClient


@dataclass
class Backend:
    name: str
    app: Any
    resources: Resources
    settings: Settings


@pytest.fixture(scope="session", params=["postgres", "meilisearch"])
async def search_backend(
    request: pytest.FixtureRequest, app_resources: tuple[Any, Resources], settings: Settings
) -> AsyncIterator[Backend]:
    if request.param == "postgres":
        yield Backend("postgres", app_resources[0], app_resources[1], settings)
        return
    url = os.environ.get("MEILI_URL")
    if not url:
        pytest.skip(
            "MEILI_URL is not set, so the Meilisearch backend was not tested (no server can be "
            "installed on this machine; `docker compose up meilisearch` and MEILI_URL run it). "
            "The same contract ran on the Postgres backend."
        )
    meili = replace(
        settings,
        meili_url=url,
        meili_api_key=os.environ.get("MEILI_API_KEY"),
        meili_index=f"coachgraph-test-{uuid.uuid4().hex[:10]}",
    )
    app = create_app(meili, count_statements=True, start_projector=False)
    async with LifespanManager(app) as manager:
        resources: Resources = manager._state["resources"]
        try:
            yield Backend("meilisearch", manager.app, resources, meili)
        finally:
            client = resources.search.client  # type: ignore[attr-defined]
            await client.delete_index_if_exists(meili.meili_index)


@pytest.fixture
async def sgql(search_backend: Backend, db: Database) -> AsyncIterator[GraphQLClient]:
    """GraphQL on the backend's app, its index emptied like the tables."""
    if search_backend.name != "postgres":
        await search_backend.resources.search.rebuild()
    transport = httpx.ASGITransport(app=search_backend.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield GraphQLClient(client, search_backend.resources.db)  # counts that app's SQL


@pytest.fixture
def project(search_backend: Backend) -> Callable[[], Awaitable[None]]:
    """Apply every outbox event so far to the backend's projections."""
    return search_backend.resources.projector.catch_up
