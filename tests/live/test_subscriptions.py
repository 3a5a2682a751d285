"""Subscriptions over real WebSockets, on two app replicas sharing Postgres and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.errors import SlowConsumer
from coachgraph.ids import decode_cursor, encode_cursor, to_global_id
from coachgraph.resolvers import live
from coachgraph.resolvers.policy import Role, Viewer
from coachgraph.runtime import Resources
from coachgraph.stores.db import Database
from coachgraph.subscriptions.broker import Broker
from tests.conftest import token_for
from tests.factories import Factory
from tests.live.conftest import WSClient, live_session, samples
from tests.servers import serve, until

METRICS = "subscription($id: ID!, $after: String) { sessionMetrics(sessionId: $id, after: $after) { cursor value kind } }"
RECORD = """mutation($id: ID!, $samples: [MetricSampleInput!]!) { recordMetrics(sessionId: $id, samples: $samples) {
  __typename ... on RecordMetrics { lastCursor } } }"""


@dataclasses.dataclass
class Replica:
    url: str
    resources: Resources


@pytest.fixture(scope="session")
async def replicas(
    settings: Settings, redis_url: str, tmp_root: Path
) -> AsyncIterator[tuple[Replica, Replica]]:
    """Two API processes' worth of app: each its own pool, graph and broker reader."""
    shared = settings.with_(redis_url=redis_url, data_dir=tmp_root / "replicas")
    made: list[Replica] = []
    async with serve_replica(shared, made), serve_replica(shared, made):
        yield made[0], made[1]


def serve_replica(settings: Settings, made: list[Replica]) -> Any:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def run() -> AsyncIterator[None]:
        ready: list[Resources] = []

        async def keep(resources: Resources) -> None:
            ready.append(resources)

        app = create_app(settings, start_projector=False, on_ready=keep)
        async with serve(app) as url:
            made.append(Replica(url, ready[0]))
            yield

    return run()


@pytest.fixture
async def pair(replicas: tuple[Replica, Replica], db: Database) -> tuple[Replica, Replica]:
    # the replicas outlive each test's emptied tables: their graphs must forget earlier tests
    for replica in replicas:
        await replica.resources.projector.rebuild()
    return replicas


async def record(
    http: httpx.AsyncClient, replica: Replica, session_id: int, n: int, token: str
) -> None:
    await record_at(http, replica.url, session_id, n, token)


async def record_at(http: httpx.AsyncClient, url: str, session_id: int, n: int, token: str) -> None:
    """recordMetrics of `n` samples through the API at `url`; it must accept them."""
    body = (
        await http.post(
            f"{url}/graphql",
            json={
                "query": RECORD,
                "variables": {
                    "id": to_global_id("TrainingSession", session_id),
                    "samples": samples(n),
                },
            },
            headers={"Authorization": f"Bearer {token}"},
        )
    ).json()
    assert body["data"]["recordMetrics"]["__typename"] == "RecordMetrics", body


async def next_data(client: WSClient) -> dict[str, Any]:
    message = await client.recv()
    assert message["type"] in ("next", "data"), message
    assert message["payload"].get("data") is not None, message
    return message["payload"]["data"]  # type: ignore[no-any-return]


async def test_ingested_on_one_replica_reaches_a_subscriber_on_the_other(
    pair: tuple[Replica, Replica], factory: Factory
) -> None:
    a, b = pair
    session = await live_session(factory)
    token = token_for("athlete", session.athlete_id)
    client = await WSClient.connect(b.url, token)
    assert (await client.ack())["type"] == "connection_ack"
    await client.subscribe(
        METRICS, {"id": to_global_id("TrainingSession", session.id), "after": encode_cursor(0)}
    )
    async with httpx.AsyncClient() as http:
        for _ in range(3):
            await record(http, a, session.id, 50, token)
    cursors = [
        decode_cursor((await next_data(client))["sessionMetrics"]["cursor"]) for _ in range(150)
    ]
    assert cursors == list(range(1, 151))
    await client.close()


async def test_resume_after_disconnect_loses_and_repeats_nothing(
    pair: tuple[Replica, Replica], factory: Factory
) -> None:
    a, b = pair
    session = await live_session(factory)
    sid = to_global_id("TrainingSession", session.id)
    token = token_for("coach", session.coach_id)
    total, batch = 5_000, 100

    async def ingest() -> None:
        async with httpx.AsyncClient() as http:
            for _ in range(total // batch):
                await record(http, a, session.id, batch, token)
                await asyncio.sleep(0.005)

    producer = asyncio.create_task(ingest())
    seen: list[int] = []
    client = await WSClient.connect(b.url, token)
    await client.ack()
    await client.subscribe(METRICS, {"id": sid, "after": encode_cursor(0)})
    while len(seen) < 1_500:
        seen.append(decode_cursor((await next_data(client))["sessionMetrics"]["cursor"]))
    await client.close()  # dropped mid-stream; samples keep arriving meanwhile

    async def recorded_meanwhile() -> bool:
        if producer.done():
            return True
        newest = await pair[0].resources.db.pool.fetchval(
            "SELECT max(seq) FROM metric_samples WHERE session_id = $1", session.id
        )
        return bool(newest and newest >= seen[-1] + 2 * batch)

    await until(recorded_meanwhile, "samples recorded while the subscriber was away")
    client = await WSClient.connect(b.url, token)
    await client.ack()
    await client.subscribe(METRICS, {"id": sid, "after": encode_cursor(seen[-1])})
    while len(seen) < total:
        seen.append(decode_cursor((await next_data(client))["sessionMetrics"]["cursor"]))
    await producer
    assert seen == list(range(1, total + 1))
    with pytest.raises(asyncio.TimeoutError):  # and nothing more than that
        await client.recv(wait=0.5)
    await client.close()


async def collect(stream: Any, until: int) -> list[int]:
    got = []
    async for sample in stream:
        got.append(sample.seq)
        if sample.seq >= until:
            return got
    return got


async def test_a_slow_consumer_does_not_stall_a_fast_one(
    db: Database, factory: Factory, broker: Broker, settings: Settings
) -> None:
    session = await live_session(factory)
    small = dataclasses.replace(settings.limits, subscriber_queue=4)
    admin = Viewer(role=Role.ADMIN)

    def stream(after: int, limits: Any) -> Any:
        return live.sample_stream(
            db, broker, session_id=session.id, kinds=None, after=after, limits=limits
        )

    slow, fast = stream(0, small), stream(0, settings.limits)
    first = [("HEART_RATE", s, 80.0) for s in _times(10)]
    await live.record(db, broker, admin, session.id, first, settings.limits)
    slow_seen = [(await asyncio.wait_for(anext(slow), 20)).seq]
    fast_task = asyncio.create_task(collect(fast, until=500))
    for _ in range(49):  # the slow one reads nothing meanwhile; ingestion never waits on it
        await live.record(
            db,
            broker,
            admin,
            session.id,
            [("POWER", s, 200.0) for s in _times(10)],
            settings.limits,
        )
    assert await asyncio.wait_for(fast_task, 20) == list(range(1, 501))

    with pytest.raises(SlowConsumer) as ended:
        async with asyncio.timeout(20):  # it ends by itself; a bound, not a wait
            async for sample in slow:
                slow_seen.append(sample.seq)
    last = ended.value.extensions["lastCursor"]
    assert decode_cursor(last) == slow_seen[-1]
    resumed = await asyncio.wait_for(
        collect(stream(decode_cursor(last), settings.limits), until=500), 20
    )
    assert slow_seen + resumed == list(range(1, 501))
    await slow.aclose()


def _times(n: int) -> list[Any]:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC) - timedelta(seconds=1)
    return [now + timedelta(microseconds=i) for i in range(n)]


async def test_every_subscription_applies_the_policy(
    pair: tuple[Replica, Replica], factory: Factory
) -> None:
    a, _ = pair
    session = await live_session(factory)
    sid = to_global_id("TrainingSession", session.id)
    stranger = await factory.athlete()
    documents = [
        (METRICS, {"id": sid}),
        ("subscription($id: ID!) { sessionUpdates(sessionId: $id) { status } }", {"id": sid}),
        (
            "subscription($id: ID!) { matchUpdates(athleteId: $id) { score } }",
            {"id": to_global_id("Athlete", session.athlete_id)},
        ),
    ]
    for token in (token_for("athlete", stranger.id), None):
        for query, variables in documents:
            client = await WSClient.connect(a.url, token)
            await client.ack()
            await client.subscribe(query, variables)
            message = await client.recv()
            assert message["type"] == "next" and message["payload"]["data"] is None, message
            assert message["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN", message
            await client.close()


async def test_bad_tokens_are_refused_and_expiry_ends_the_connection(
    pair: tuple[Replica, Replica], factory: Factory
) -> None:
    a, _ = pair
    session = await live_session(factory)
    client = await WSClient.connect(a.url, "not-a-token")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403

    client = await WSClient.connect(a.url, token_for("athlete", session.athlete_id, ttl=2))
    await client.ack()
    await client.subscribe(METRICS, {"id": to_global_id("TrainingSession", session.id)})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv(wait=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert "expired" in closed.value.rcvd.reason


async def test_session_updates_over_the_legacy_protocol(
    pair: tuple[Replica, Replica], factory: Factory
) -> None:
    a, b = pair
    session = await live_session(factory)
    sid = to_global_id("TrainingSession", session.id)
    client = await WSClient.connect(
        b.url, token_for("athlete", session.athlete_id), protocol="graphql-ws"
    )
    assert (await client.ack())["type"] == "connection_ack"
    await client.subscribe(
        "subscription($id: ID!) { sessionUpdates(sessionId: $id) { status endedAt coach { name } } }",
        {"id": sid},
    )
    # live-only: an update published before replica B registers the subscription is lost
    await until(
        lambda: live.status_topic(session.id) in b.resources.broker.fanout.topics,  # type: ignore[attr-defined]
        "the subscription to register on replica B",
    )
    async with httpx.AsyncClient() as http:
        body = (
            await http.post(
                f"{a.url}/graphql",
                json={
                    "query": "mutation($id: ID!) { endSession(id: $id) { __typename } }",
                    "variables": {"id": sid},
                },
                headers={"Authorization": f"Bearer {token_for('coach', session.coach_id)}"},
            )
        ).json()
    assert body["data"]["endSession"]["__typename"] == "TrainingSession"
    update = (await next_data(client))["sessionUpdates"]
    assert update["status"] == "COMPLETED" and update["endedAt"]
    await client.close()


async def test_match_updates_start_with_the_list_and_follow_changes(
    pair: tuple[Replica, Replica], factory: Factory
) -> None:
    a, _ = pair
    skill = await factory.skill()
    athlete = await factory.athlete(looking_for_coach=True)
    async with factory.db.transaction() as conn:
        from coachgraph.stores import athletes

        await athletes.set_goals(conn, athlete_id=athlete.id, skill_ids=[skill.id])
    first_coach = await factory.coach()
    await factory.teach(first_coach.id, skill.id, level=2)
    await a.resources.projector.catch_up()
    client = await WSClient.connect(a.url, token_for("athlete", athlete.id))
    await client.ack()
    await client.subscribe(
        "subscription($id: ID!) { matchUpdates(athleteId: $id, first: 5) { coach { id } score } }",
        {"id": to_global_id("Athlete", athlete.id)},
    )
    initial = (await next_data(client))["matchUpdates"]
    assert [m["coach"]["id"] for m in initial] == [to_global_id("Coach", first_coach.id)]

    better = await factory.coach()
    await factory.teach(better.id, skill.id, level=5)
    await a.resources.projector.catch_up()
    updated = (await next_data(client))["matchUpdates"]
    assert [m["coach"]["id"] for m in updated][:2] == [
        to_global_id("Coach", better.id),
        to_global_id("Coach", first_coach.id),
    ]
    await client.close()


async def end_session(
    http: httpx.AsyncClient, replica: Replica, session_id: int, token: str
) -> None:
    body = (
        await http.post(
            f"{replica.url}/graphql",
            json={
                "query": "mutation($id: ID!) { endSession(id: $id) { __typename } }",
                "variables": {"id": to_global_id("TrainingSession", session_id)},
            },
            headers={"Authorization": f"Bearer {token}"},
        )
    ).json()
    assert body["data"]["endSession"]["__typename"] == "TrainingSession", body


async def test_metrics_complete_once_the_session_has_ended(
    pair: tuple[Replica, Replica], factory: Factory
) -> None:
    a, b = pair
    session = await live_session(factory)
    sid = to_global_id("TrainingSession", session.id)
    token = token_for("coach", session.coach_id)
    client = await WSClient.connect(b.url, token)
    await client.ack()
    op = await client.subscribe(METRICS, {"id": sid, "after": encode_cursor(0)})
    async with httpx.AsyncClient() as http:
        for _ in range(2):
            await record(http, a, session.id, 50, token)
        await end_session(http, a, session.id, token)  # on the other replica
    cursors = [
        decode_cursor((await next_data(client))["sessionMetrics"]["cursor"]) for _ in range(100)
    ]
    assert cursors == list(range(1, 101))
    assert await client.recv() == {"id": op, "type": "complete"}
    await client.close()

    # after the end: what is stored after the cursor, then complete (both protocols)
    for protocol, after, expected in [
        ("graphql-ws", encode_cursor(60), list(range(61, 101))),
        ("graphql-transport-ws", None, []),
    ]:
        client = await WSClient.connect(a.url, token, protocol=protocol)
        await client.ack()
        op = await client.subscribe(METRICS, {"id": sid, "after": after})
        got = [
            decode_cursor((await next_data(client))["sessionMetrics"]["cursor"]) for _ in expected
        ]
        assert got == expected
        assert await client.recv() == {"id": op, "type": "complete"}, protocol
        await client.close()


async def test_session_updates_complete_once_the_session_has_ended(
    pair: tuple[Replica, Replica], factory: Factory
) -> None:
    a, b = pair
    session = await live_session(factory)
    sid = to_global_id("TrainingSession", session.id)
    token = token_for("coach", session.coach_id)
    updates = "subscription($id: ID!) { sessionUpdates(sessionId: $id) { status } }"
    client = await WSClient.connect(b.url, token)
    await client.ack()
    op = await client.subscribe(updates, {"id": sid})
    await until(
        lambda: live.status_topic(session.id) in b.resources.broker.fanout.topics,  # type: ignore[attr-defined]
        "the subscription to register on replica B",
    )
    async with httpx.AsyncClient() as http:
        await end_session(http, a, session.id, token)  # on the other replica
    assert (await next_data(client))["sessionUpdates"] == {"status": "COMPLETED"}
    assert await client.recv() == {"id": op, "type": "complete"}
    await client.close()

    # after the end: the session once, then complete (both protocols)
    for protocol in ("graphql-ws", "graphql-transport-ws"):
        client = await WSClient.connect(a.url, token, protocol=protocol)
        await client.ack()
        op = await client.subscribe(updates, {"id": sid})
        assert (await next_data(client))["sessionUpdates"] == {"status": "COMPLETED"}
        assert await client.recv() == {"id": op, "type": "complete"}, protocol
        await client.close()
