"""Real services for the tests: an embedded PostgreSQL per session, the app over ASGI."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from coachgraph import engine
from coachgraph.api.auth import issue_token
from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.graph import blend
from coachgraph.ids import to_global_id
from coachgraph.resolvers.policy import Role
from coachgraph.runtime import Resources
from coachgraph.stores.db import Database, EmbeddedPostgres
from tests.factories import Factory

# the browser and served-app fixtures of the page tests (GraphiQL, the live session page)
pytest_plugins = ["tests.browser"]

SECRET = "test-secret-for-coachgraph-tests"

# Every query and subscription event the suite sends runs compiled and through graphql-core,
# with the same context; a difference fails the test that sent it (servers the tests start
# as processes inherit the variable and log a difference as an error).
os.environ["COACHGRAPH_ENGINE_DIFFERENTIAL"] = "1"
engine.DIFFERENTIAL = True


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The comparison is not vacuous: say how many operations went through both paths."""
    if engine.COMPARED:  # a run of a few files may send no GraphQL at all
        compared = ", ".join(f"{n} {kind}" for kind, n in sorted(engine.COMPARED.items()))
        terminalreporter.write_line(f"compiled execution compared with graphql-core: {compared}")


@contextmanager
def compiled_only() -> Iterator[None]:
    """Operations run on the compiled path alone, not compared with graphql-core."""
    engine.DIFFERENTIAL = False
    try:
        yield
    finally:
        engine.DIFFERENTIAL = True


@pytest.fixture
def one_path() -> Iterator[None]:
    """For tests whose answers depend on when they are asked (a store going down mid-test):
    a second run moments later may rightly differ, so the compiled path runs alone."""
    with compiled_only():
        yield


@pytest.fixture(autouse=True)
def compiled_matches_graphql_core() -> Iterator[None]:
    seen = len(engine.MISMATCHES)
    yield
    differences = engine.MISMATCHES[seen:]
    assert not differences, f"compiled execution differs from graphql-core: {differences}"


TABLES = (
    "audit_events, erasures, outbox, collab_vectors, collab_links, collab_rebuild, "
    "collab_blend_weights, "
    "search_documents, search_words, metric_samples, media, training_sessions, enrollments, coach_athletes, "
    "program_skills, programs, athlete_goals, athlete_skills, coach_skills, "
    "skill_prerequisites, skills, athletes, coaches"
)


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="coachgraph-test-") as tmp:
        path = Path(tmp)
        path.chmod(0o755)  # the embedded server runs as its own system user
        yield path


@pytest.fixture(scope="session")
async def pg_dsn(tmp_root: Path) -> AsyncIterator[str]:
    server = EmbeddedPostgres(tmp_root / "pg", delete_on_stop=True)
    dsn = await server.start()
    try:
        yield dsn
    finally:
        await server.stop()


@pytest.fixture(scope="session")
def settings(pg_dsn: str, tmp_root: Path) -> Settings:
    # gc_tuning off: it freezes what is alive at each app start, and the suite starts many
    return Settings(
        data_dir=tmp_root / "data", jwt_secret=SECRET, database_url=pg_dsn, gc_tuning=False
    )


@pytest.fixture(scope="session")
async def app_resources(settings: Settings) -> AsyncIterator[tuple[Any, Resources]]:
    # the projector runs when a test says so (catch_up/rebuild): a background one would race
    # the TRUNCATE between tests for table locks
    app = create_app(settings, count_statements=True, start_projector=False)
    async with LifespanManager(app) as manager:
        resources: Resources = manager._state["resources"]
        yield manager.app, resources


@pytest.fixture
def learned_matching(app_resources: tuple[Any, Resources]) -> Iterator[None]:
    """The app's matchCoaches with the learned signal on (COACHGRAPH_LEARNED_MATCHING) for
    one test: the projector keeps the vectors either way, the setting is read per request."""
    resources = app_resources[1]
    before = resources.settings
    resources.settings = replace(before, learned_matching=True)
    try:
        yield
    finally:
        resources.settings = before


@pytest.fixture
async def db(app_resources: tuple[Any, Resources]) -> AsyncIterator[Database]:
    """The app's database, emptied before each test."""
    database = app_resources[1].db
    await database.pool.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    blend.forget()  # the blend weights cached from an earlier test's fit
    yield database


@pytest.fixture
async def client(
    app_resources: tuple[Any, Resources], db: Database
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_resources[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def factory(db: Database) -> Factory:
    return Factory(db)


class GraphQLClient:
    """Posts GraphQL documents as a given identity and counts SQL statements."""

    def __init__(self, client: httpx.AsyncClient, db: Database) -> None:
        self.client = client
        self.db = db

    async def raw(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def __call__(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        response = await self.raw(query, variables, token)
        body: dict[str, Any] = response.json()
        return body

    async def statements(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> tuple[dict[str, Any], int]:
        """The response and how many SQL statements serving it took, on the compiled path
        alone (a differential run would count graphql-core's statements too)."""
        before = await self.db.settle()
        with compiled_only():
            body = await self(query, variables, token)
        return body, await self.db.settle() - before


@pytest.fixture
def gql(client: httpx.AsyncClient, db: Database) -> GraphQLClient:
    return GraphQLClient(client, db)


def token_for(role: str, raw_id: int | None = None, ttl: int = 600) -> str:
    subject = None
    if role == "coach":
        subject = to_global_id("Coach", raw_id or 0)
    elif role == "athlete":
        subject = to_global_id("Athlete", raw_id or 0)
    return issue_token(SECRET, role=Role(role.upper()), subject=subject, ttl_seconds=ttl)


@pytest.fixture
def admin_token() -> str:
    return token_for("admin")
