"""What the workers of `serve --workers N` share without Redis, through Postgres: rate-limit
windows and the automatic persisted queries. Two instances stand for two workers."""

from __future__ import annotations

import hashlib
import logging
import uuid
from pathlib import Path

import pytest

from coachgraph.config import Limits, Settings
from coachgraph.limiter import Door, Limiter, PostgresStorage
from coachgraph.stores.db import Database
from coachgraph.stores.documents import DocumentStore


def workers_settings(settings: Settings, **limits: int) -> Settings:
    return settings.with_(workers=2, limits=Limits(**limits))  # type: ignore[arg-type]


async def test_two_workers_spend_one_budget(settings: Settings, db: Database) -> None:
    shared = workers_settings(settings, rate_limit_per_minute=10, rate_limit_burst=10)
    first, second = Limiter.open(shared), Limiter.open(shared)
    assert isinstance(first.storage, PostgresStorage)
    client = f"client-{uuid.uuid4()}"
    try:
        answers = [await (first, second)[i % 2].hit(Door.HTTP, client) for i in range(14)]
    finally:
        await first.close()
        await second.close()
    assert answers[:10] == [None] * 10  # ten passed, on either worker
    assert all(isinstance(a, int) and 1 <= a <= 60 for a in answers[10:])  # then Retry-After


async def test_a_request_spends_every_window_or_none(settings: Settings, db: Database) -> None:
    """A request's windows at a door (a burst and a minute) are spent in one statement: past
    either, nothing is spent in the other. Windows of an hour and a day, so that no window
    boundary passes during the test."""
    storage = PostgresStorage(settings.database_url or "", timeout=5)
    tag = uuid.uuid4().hex
    burst, day = f"burst-{tag}", f"day-{tag}"
    windows = [(burst, 3, 3600), (day, 4, 86400)]
    try:
        answers = [await storage.spend(windows, 1) for _ in range(4)]
        assert answers == [True, True, True, False]  # the burst refused the fourth
        counts = {
            r["key"]: r["count"]
            for r in await db.pool.fetch(
                "SELECT key, count FROM rate_windows WHERE key = ANY($1::text[])", [burst, day]
            )
        }
        assert counts == {burst: 3, day: 3}  # the refused request spent nothing in the day
        # a cost past a window's whole limit is refused without a statement
        assert await storage.spend([(day, 4, 86400)], 5) is False
        assert await storage.spend([(day, 4, 86400)], 1) is True  # the day's last one
        assert await storage.spend([(day, 4, 86400)], 1) is False
    finally:
        await storage.aclose()


async def test_one_worker_counts_in_its_own_memory(settings: Settings) -> None:
    alone = Limiter.open(settings.with_(workers=1))
    try:
        assert not isinstance(alone.storage, PostgresStorage)
    finally:
        await alone.close()


async def test_an_unreachable_postgres_leaves_each_worker_counting_alone(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    down = workers_settings(settings, rate_limit_per_minute=3, rate_limit_burst=3).with_(
        database_url="postgresql://nobody@127.0.0.1:1/none"
    )
    limiter = Limiter.open(down)
    client = f"client-{uuid.uuid4()}"
    try:
        with caplog.at_level(logging.WARNING):
            answers = [await limiter.hit(Door.HTTP, client) for _ in range(4)]
    finally:
        await limiter.close()
    assert answers[:3] == [None] * 3 and answers[3] is not None  # counted here, not failed
    assert any("counting in this process" in r.getMessage() for r in caplog.records)


def _digest(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


async def test_a_document_one_worker_learnt_the_other_knows(
    settings: Settings, db: Database
) -> None:
    shared = workers_settings(settings, persisted_queries_max=3)
    learnt, other = (
        DocumentStore.open(shared, pool=db.pool),
        DocumentStore.open(shared, pool=db.pool),
    )
    documents = [f"query Q{uuid.uuid4().hex} {{ __typename }}" for _ in range(5)]
    await learnt.put(_digest(documents[0]), documents[0])
    assert await other.get(_digest(documents[0])) == documents[0]
    assert await other.get(_digest("query Unknown { __typename }")) is None
    # bounded: the least recently used go past persisted_queries_max
    for document in documents[1:]:
        await learnt.put(_digest(document), document)
    stored = await db.pool.fetchval(
        "SELECT count(*) FROM persisted_queries WHERE digest = ANY($1::text[])",
        [_digest(d) for d in documents],
    )
    assert stored == 3
    assert (
        await DocumentStore.open(shared, pool=db.pool).get(_digest(documents[-1])) == documents[-1]
    )


async def test_one_worker_keeps_documents_to_itself(settings: Settings, db: Database) -> None:
    alone = DocumentStore.open(settings, pool=db.pool)
    other = DocumentStore.open(settings, pool=db.pool)
    document = f"query Q{uuid.uuid4().hex} {{ __typename }}"
    await alone.put(_digest(document), document)
    assert await other.get(_digest(document)) is None


def test_worker_counts_and_the_broker_they_imply() -> None:
    import os

    from coachgraph.config import SettingsError

    assert Settings.from_env({"COACHGRAPH_WORKERS": "3"}).workers == 3
    assert Settings.from_env({"COACHGRAPH_WORKERS": "auto"}).workers == len(os.sched_getaffinity(0))
    for bad in ("0", "65", "two"):
        with pytest.raises(SettingsError, match="COACHGRAPH_WORKERS must be a number"):
            Settings.from_env({"COACHGRAPH_WORKERS": bad})
    assert Settings.from_env({}).broker_name == "memory"
    assert Settings.from_env({"COACHGRAPH_WORKERS": "2"}).broker_name == "postgres"
    with_redis = {"COACHGRAPH_WORKERS": "2", "REDIS_URL": "redis://127.0.0.1:1/0"}
    assert Settings.from_env(with_redis).broker_name == "redis"
    with pytest.raises(SettingsError, match="COACHGRAPH_BROKER=redis needs REDIS_URL"):
        Settings.from_env({"COACHGRAPH_BROKER": "redis"})


def test_worker_pools_fit_the_servers_connections(settings: Settings) -> None:
    from coachgraph.config import SettingsError
    from coachgraph.workers import pool_size_for

    assert pool_size_for(settings.with_(workers=2), 100) == settings.db_pool_max
    assert pool_size_for(settings.with_(workers=8), 100) == 5  # 90 / 8 less 6 others each
    with pytest.raises(SettingsError, match="16 workers need more connections"):
        pool_size_for(settings.with_(workers=16), 100)


async def test_serve_refuses_a_bad_worker_count_in_one_line(tmp_path: Path) -> None:
    from tests.conftest import SECRET
    from tests.servers import cli_env
    from tests.test_cli_commands import cli
    from tests.test_cli_refusals import one_line

    env = cli_env(tmp_path, COACHGRAPH_JWT_SECRET=SECRET)
    code, out, err = await cli("serve", "--port", "0", "--workers", "0", env=env)
    assert code == 2 and "serving" not in out
    assert one_line(err) == (
        "coachgraph: configuration error: --workers must be a number from 1 to 64 or `auto`, got 0"
    )
    env["COACHGRAPH_WORKERS"] = "many"
    code, _, err = await cli("serve", "--port", "0", env=env)
    assert code == 2
    assert "COACHGRAPH_WORKERS must be a number from 1 to 64 or `auto`, got 'many'" in one_line(err)
    assert not (tmp_path / "postgres").exists()  # refused before the embedded server started
