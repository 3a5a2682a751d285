"""Leaderboard backends: Postgres always, and Redis (the bundled redis-server) beside it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager

from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.leaderboards.model import Leaderboards
from coachgraph.leaderboards.postgres import PostgresLeaderboards
from coachgraph.leaderboards.redis import RedisLeaderboards
from coachgraph.runtime import Resources
from coachgraph.stores.db import Database
from tests.servers import redis_server


@pytest.fixture(scope="session")
def boards_redis_url(tmp_root: Path) -> Iterator[str]:
    with redis_server(tmp_root / "redis-boards") as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(params=["postgres", "redis"])
async def boards(request: pytest.FixtureRequest, db: Database) -> AsyncIterator[Leaderboards]:
    """Each leaderboard backend in turn, empty."""
    made: Leaderboards
    if request.param == "postgres":
        made = PostgresLeaderboards(db)
    else:
        url = request.getfixturevalue("boards_redis_url")
        made = RedisLeaderboards(db, url, prefix=f"test-board-{uuid.uuid4().hex[:8]}")
    await made.start()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture(scope="session")
async def redis_app(
    settings: Settings, boards_redis_url: str
) -> AsyncIterator[tuple[Any, Resources]]:
    """The app with REDIS_URL set: its leaderboards (and broker) in Redis."""
    app = create_app(
        settings.with_(redis_url=boards_redis_url), count_statements=True, start_projector=False
    )
    async with LifespanManager(app) as manager:
        yield manager.app, manager._state["resources"]
