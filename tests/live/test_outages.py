"""Redis outages against a real redis-server that the test kills and starts again.

Redis is not the source of truth: while it is down mutations and ingest still commit, a
subscriber receives nothing false, and once it is back every subscriber catches up from
Postgres: every sample, in order, no gap, no duplicate.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.ids import decode_cursor, to_global_id
from coachgraph.runtime import Resources
from coachgraph.subscriptions.redis import RedisBroker
from tests import servers
from tests.conftest import token_for
from tests.factories import Factory
from tests.live.conftest import WSClient, live_session, samples
from tests.servers import RedisProcess, serve

# a store goes down mid-test: answers depend on when they are asked (conftest.one_path)
pytestmark = pytest.mark.usefixtures("one_path")

METRICS = "subscription($id: ID!) { sessionMetrics(sessionId: $id) { cursor value kind } }"
RECORD = """mutation($id: ID!, $samples: [MetricSampleInput!]!) { recordMetrics(sessionId: $id, samples: $samples) {
  __typename ... on RecordMetrics { accepted lastCursor } } }"""
DEADLINE = 60.0


@dataclasses.dataclass
class Replica:
    url: str
    resources: Resources


@asynccontextmanager
async def replica(settings: Settings) -> AsyncIterator[Replica]:
    ready: list[Resources] = []

    async def keep(resources: Resources) -> None:
        ready.append(resources)

    app = create_app(settings, start_projector=False, on_ready=keep)
    async with serve(app) as url:
        yield Replica(url, ready[0])


# every wait here may take this long: servers restart under it
until = functools.partial(servers.until, deadline=DEADLINE)


async def record(http: httpx.AsyncClient, base: str, session: str, token: str, n: int) -> None:
    body = (
        await http.post(
            f"{base}/graphql",
            json={"query": RECORD, "variables": {"id": session, "samples": samples(n)}},
            headers={"Authorization": f"Bearer {token}"},
        )
    ).json()
    assert "errors" not in body, body
    assert body["data"]["recordMetrics"]["accepted"] == n, body


async def collect(ws: WSClient, received: list[tuple[int, float]], wanted: int) -> None:
    """Receive sessionMetrics items until `wanted` have arrived (each must be `next`)."""
    while len(received) < wanted:
        message = await ws.recv(wait=DEADLINE)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        item = message["payload"]["data"]["sessionMetrics"]
        received.append((decode_cursor(item["cursor"]), item["value"]))


async def test_redis_outage_commits_and_subscribers_catch_up(
    settings: Settings, factory: Factory, tmp_root: Path
) -> None:
    limits = dataclasses.replace(
        settings.limits, store_retry_initial_ms=50, store_retry_max_ms=400, store_timeout_ms=1000
    )
    with RedisProcess(tmp_root / "redis-outage") as redis:
        shared = settings.with_(
            redis_url=redis.url,
            data_dir=tmp_root / "redis-outage-app",
            limits=limits,
        )
        # the subscriber on one replica, the writes on another: only Redis connects them
        async with (
            replica(shared) as writer,
            replica(shared) as reader,
            httpx.AsyncClient(timeout=30) as http,
        ):
            session = await live_session(factory)
            gid = to_global_id("TrainingSession", session.id)
            token = token_for("coach", session.coach_id)
            ws = await WSClient.connect(reader.url, token)
            try:
                assert (await ws.ack())["type"] == "connection_ack"
                await ws.subscribe(METRICS, {"id": gid})
                received: list[tuple[int, float]] = []
                # live before the outage: the subscription is open once a batch arrives
                await until(lambda: reader.resources.broker.fanout.topics, "the subscription")
                await record(http, writer.url, gid, token, 3)
                await collect(ws, received, 3)

                redis.kill()
                # writes commit while Redis is down: GraphQL, and the NDJSON ingest route
                await record(http, writer.url, gid, token, 4)
                ndjson = "\n".join(json.dumps(s) for s in samples(2)).encode()
                response = await http.post(
                    f"{writer.url}/ingest/sessions/{gid}/samples",
                    content=ndjson,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/x-ndjson",
                    },
                )
                assert response.status_code == 200, response.text
                assert response.json()["accepted"] == 2
                await record(http, writer.url, gid, token, 1)
                healthz = await http.get(f"{reader.url}/healthz")
                assert healthz.status_code == 503
                assert healthz.json()["failed"] == ["broker"]
                assert healthz.json()["postgres"] == "ok"

                redis.start()
                broker = reader.resources.broker
                assert isinstance(broker, RedisBroker)
                await until(lambda: broker.reconnects >= 1, "the reader to reconnect")
                await record(http, writer.url, gid, token, 2)
                await collect(ws, received, 12)

                stored = await factory.db.pool.fetch(
                    "SELECT seq, value FROM metric_samples WHERE session_id = $1 ORDER BY seq",
                    session.id,
                )
                assert received == [(r["seq"], r["value"]) for r in stored]
                assert [seq for seq, _ in received] == list(range(1, 13))
                # and nothing more: no duplicate arrives once the stream has caught up
                await record(http, writer.url, gid, token, 1)
                await collect(ws, received, 13)
                assert [seq for seq, _ in received] == list(range(1, 14))
                assert (await http.get(f"{reader.url}/healthz")).status_code == 200
            finally:
                await ws.close()


async def test_subscribing_while_redis_is_down(
    settings: Settings, factory: Factory, tmp_root: Path
) -> None:
    """A subscription opened during the outage gets its samples once Redis is back (and the
    samples its own replica records meanwhile, from Postgres)."""
    limits = dataclasses.replace(
        settings.limits, store_retry_initial_ms=50, store_retry_max_ms=400, store_timeout_ms=1000
    )
    with RedisProcess(tmp_root / "redis-outage-2") as redis:
        shared = settings.with_(
            redis_url=redis.url,
            data_dir=tmp_root / "redis-outage-app-2",
            limits=limits,
        )
        async with replica(shared) as app, httpx.AsyncClient(timeout=30) as http:
            session = await live_session(factory)
            gid = to_global_id("TrainingSession", session.id)
            token = token_for("coach", session.coach_id)
            redis.kill()
            ws = await WSClient.connect(app.url, token)
            try:
                assert (await ws.ack())["type"] == "connection_ack"
                await ws.subscribe(METRICS, {"id": gid})
                await until(lambda: app.resources.broker.fanout.topics, "the subscription")
                await record(http, app.url, gid, token, 2)  # same replica: resynced locally
                received: list[tuple[int, float]] = []
                await collect(ws, received, 2)
                redis.start()
                await record(http, app.url, gid, token, 3)
                await collect(ws, received, 5)
                assert [seq for seq, _ in received] == [1, 2, 3, 4, 5]
            finally:
                await ws.close()
