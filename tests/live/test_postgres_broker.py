"""The PostgreSQL broker beyond the contract: batches of samples travel as wake-ups and are
read back from metric_samples, a message too large for NOTIFY becomes a resync, and a lost
LISTEN connection is found again, its subscribers told to resync."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from coachgraph.config import Settings
from coachgraph.resolvers import live
from coachgraph.retry import Backoff
from coachgraph.stores.db import Database
from coachgraph.subscriptions.broker import RESYNC
from coachgraph.subscriptions.postgres import CHANNEL, PostgresBroker, SampleWakeups
from coachgraph.subscriptions.topics import metrics_topic
from tests.factories import Factory
from tests.live.conftest import live_session
from tests.live.test_live_events import ADMIN, _batch
from tests.servers import until


@pytest.fixture
async def two(pg_dsn: str) -> AsyncIterator[tuple[PostgresBroker, PostgresBroker]]:
    """Two brokers, as in two worker processes."""
    made = [PostgresBroker(pg_dsn, retry=Backoff(0.05, 0.2)) for _ in range(2)]
    for broker in made:
        await broker.start()
    try:
        yield made[0], made[1]
    finally:
        for broker in made:
            await broker.close()


async def test_samples_travel_as_a_wake_up_and_are_read_back(
    two: tuple[PostgresBroker, PostgresBroker],
    db: Database,
    factory: Factory,
    settings: Settings,
    pg_dsn: str,
) -> None:
    writer, reader = two
    session = await live_session(factory)
    topic = metrics_topic(session.id)
    sub = await reader.subscribe(topic, queue_size=10)
    spy = await asyncpg.connect(pg_dsn)
    payloads: list[str] = []
    await spy.add_listener(CHANNEL, lambda *args: payloads.append(args[-1]))
    try:
        await live.record(db, writer, ADMIN, session.id, _batch(150), settings.limits)
        message = await asyncio.wait_for(sub.get(), 5)
        await until(lambda: any(topic in p for p in payloads), "the wake-up")
    finally:
        await spy.close()
    # the subscriber got the batch itself, as the in-process broker would hand it
    assert [row[0] for row in message["samples"]] == list(range(1, 151))
    assert {row[1] for row in message["samples"]} == {"HEART_RATE"}
    # what went through NOTIFY was its session and cursors only
    [sent] = [json.loads(p) for p in payloads if topic in p]
    assert sent == {"t": topic, "w": {"first": 1, "last": 150}}
    assert isinstance(reader.wakeups, SampleWakeups) and reader.wakeups.reads >= 1
    sub.close()


async def test_a_message_too_large_for_notify_is_a_resync(
    two: tuple[PostgresBroker, PostgresBroker],
) -> None:
    writer, reader = two
    sub = await reader.subscribe("t:big", queue_size=10)
    await writer.publish("t:big", {"blob": "x" * 10_000})
    await writer.publish("t:big", {"n": 1})
    assert await asyncio.wait_for(sub.get(), 5) == RESYNC
    assert await asyncio.wait_for(sub.get(), 5) == {"n": 1}
    sub.close()


async def test_a_lost_listen_connection_is_found_again_and_subscribers_resync(
    two: tuple[PostgresBroker, PostgresBroker], pg_dsn: str
) -> None:
    writer, reader = two
    sub = await reader.subscribe("t:lost", queue_size=10)
    await writer.publish("t:lost", {"n": 0})
    assert await asyncio.wait_for(sub.get(), 5) == {"n": 0}
    listen_pid = reader._conn.get_server_pid()  # type: ignore[union-attr]
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", listen_pid)
    finally:
        await admin.close()
    assert await asyncio.wait_for(sub.get(), 10) == RESYNC  # read what you missed
    assert reader.reconnects == 1
    await reader.ping()
    await writer.publish("t:lost", {"n": 1})
    assert await asyncio.wait_for(sub.get(), 5) == {"n": 1}
    sub.close()


async def test_stray_notifications_on_the_channel_are_ignored(
    two: tuple[PostgresBroker, PostgresBroker], pg_dsn: str
) -> None:
    writer, reader = two
    sub = await reader.subscribe("t:stray", queue_size=10)
    stranger = await asyncpg.connect(pg_dsn)
    try:
        for payload in ("not json", "{}", "[1, 2]", '{"t": 5, "m": 1}', '{"t": "t:stray"}'):
            await stranger.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
    finally:
        await stranger.close()
    await writer.publish("t:stray", {"n": 1})
    # the one addressed to the topic without a message reads as a resync; the rest are dropped
    assert await asyncio.wait_for(sub.get(), 5) == RESYNC
    assert await asyncio.wait_for(sub.get(), 5) == {"n": 1}
    sub.close()
