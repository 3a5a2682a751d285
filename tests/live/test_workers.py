"""`coachgraph serve --workers 2`: two processes on one port, sharing events through the
PostgreSQL broker and projecting the outbox each into its own graph.

The server is a real subprocess on the tests' database (DATABASE_URL), so the factory writes
what it serves. Requests are pinned to a worker by keeping one connection per client (healthz
names the worker that answered it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from coachgraph.ids import decode_cursor, encode_cursor, to_global_id
from tests.conftest import SECRET, token_for
from tests.factories import Factory
from tests.live.conftest import WSClient, live_session
from tests.live.test_subscriptions import METRICS, record_at
from tests.servers import cli_env, start_serve, until

BATCHES = 24
PER_BATCH = 5


@dataclass
class Workers:
    url: str
    proc: asyncio.subprocess.Process
    log: Path


@pytest.fixture(scope="module")
async def workers(pg_dsn: str, tmp_root: Path) -> AsyncIterator[Workers]:
    log = tmp_root / "workers.log"
    env = cli_env(tmp_root / "workers", DATABASE_URL=pg_dsn, COACHGRAPH_JWT_SECRET=SECRET)
    proc = await start_serve(env, log, "--workers", "2")
    try:
        port = await serving_port(log, proc)
        url = f"http://127.0.0.1:{port}"
        await until(lambda: log.read_text().count("Application startup complete") >= 2, "2 up")
        yield Workers(url, proc, log)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 40)
            except TimeoutError:
                proc.kill()
                await proc.wait()


_SERVING = re.compile(r"coachgraph: 2 workers serving http://127\.0\.0\.1:(\d+)/graphql")


async def serving_port(log: Path, proc: asyncio.subprocess.Process) -> int:
    """The port the supervisor bound (--port 0), as it announces it."""

    def logged() -> int | None:
        text = log.read_text(errors="replace")
        assert proc.returncode is None, f"serve exited {proc.returncode}: {text[-3000:]}"
        found = _SERVING.search(text)
        return int(found[1]) if found else None

    port: int = await until(logged, "serve to listen")
    return port


async def worker_of(http: httpx.AsyncClient, url: str) -> dict[str, int]:
    found: dict[str, int] = (await http.get(f"{url}/healthz")).json()["worker"]
    return found


@contextlib.asynccontextmanager
async def pinned(url: str) -> AsyncIterator[dict[int, httpx.AsyncClient]]:
    """One client per worker, each keeping its one connection (to that worker)."""
    clients: dict[int, httpx.AsyncClient] = {}
    spare: list[httpx.AsyncClient] = []
    try:
        for _ in range(40):
            http = httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=20)
            index = (await worker_of(http, url))["index"]
            if index in clients:
                spare.append(http)
            else:
                clients[index] = http
            if len(clients) == 2:
                break
        assert sorted(clients) == [0, 1], "the kernel handed every connection to one worker"
        yield clients
    finally:
        for http in [*clients.values(), *spare]:
            await http.aclose()


async def record_on(
    http: httpx.AsyncClient, url: str, index: int, session_id: int, token: str
) -> None:
    """recordMetrics on worker `index` (the connection is checked to still reach it)."""
    assert (await worker_of(http, url))["index"] == index
    await record_at(http, url, session_id, PER_BATCH, token)


async def cursors_of(client: WSClient, count: int) -> list[int]:
    found = []
    for _ in range(count):
        message = await client.recv()
        assert message["type"] == "next", message
        found.append(decode_cursor(message["payload"]["data"]["sessionMetrics"]["cursor"]))
    return found


async def test_samples_ingested_on_both_workers_reach_a_subscriber_once_in_order(
    workers: Workers, factory: Factory
) -> None:
    session = await live_session(factory)
    token = token_for("coach", session.coach_id)
    sid = to_global_id("TrainingSession", session.id)
    subscriber = await WSClient.connect(workers.url, token)
    assert (await subscriber.ack())["type"] == "connection_ack"
    await subscriber.subscribe(METRICS, {"id": sid, "after": encode_cursor(0)})
    async with pinned(workers.url) as clients:
        for i in range(BATCHES):  # alternately on each worker
            await record_on(clients[i % 2], workers.url, i % 2, session.id, token)
    total = BATCHES * PER_BATCH
    assert await cursors_of(subscriber, total) == list(range(1, total + 1))
    with pytest.raises(TimeoutError):  # and nothing twice
        await subscriber.recv(wait=0.5)
    await subscriber.close()


async def test_a_killed_worker_is_replaced_and_its_subscribers_resume(
    workers: Workers, factory: Factory
) -> None:
    session = await live_session(factory)
    token = token_for("coach", session.coach_id)
    sid = to_global_id("TrainingSession", session.id)
    subscribers = []
    for _ in range(6):
        client = await WSClient.connect(workers.url, token)
        assert (await client.ack())["type"] == "connection_ack"
        await client.subscribe(METRICS, {"id": sid, "after": encode_cursor(0)})
        subscribers.append(client)
    seen: list[list[int]] = [[] for _ in subscribers]
    async with pinned(workers.url) as clients:
        for i in range(4):
            await record_on(clients[i % 2], workers.url, i % 2, session.id, token)
        for client, got in zip(subscribers, seen, strict=True):
            got += await cursors_of(client, 4 * PER_BATCH)
        pids = {i: (await worker_of(http, workers.url))["pid"] for i, http in clients.items()}
    # kill worker 0, and worker 1 too if no subscriber was on worker 0
    dropped: set[int] = set()
    for index in (0, 1):
        os.kill(pids[index], signal.SIGKILL)
        dropped |= {i for i, c in enumerate(subscribers) if await _closed(c)}
        await _replaced(workers.url, index, pids[index])
        if dropped:
            break
    assert dropped, "no subscriber lost its connection"
    # samples go on, on the workers there are now
    async with pinned(workers.url) as clients:
        for i in range(4, 8):
            await record_on(clients[i % 2], workers.url, i % 2, session.id, token)
    total = 8 * PER_BATCH
    for i, got in enumerate(seen):
        client = subscribers[i]
        if i in dropped:  # resume after the last cursor received
            client = await WSClient.connect(workers.url, token)
            assert (await client.ack())["type"] == "connection_ack"
            await client.subscribe(METRICS, {"id": sid, "after": encode_cursor(got[-1])})
        got += await cursors_of(client, total - len(got))
        assert got == list(range(1, total + 1))
        await client.close()
    assert "exited with -9; starting another" in workers.log.read_text()


async def _closed(client: WSClient) -> bool:
    """Whether the connection ends (its worker died) within a few seconds."""
    try:
        await asyncio.wait_for(client.ws.wait_closed(), 3)
    except TimeoutError:
        return False
    return True


async def _replaced(url: str, index: int, old_pid: int) -> None:
    async def up() -> bool:
        for _ in range(6):
            async with httpx.AsyncClient(timeout=5) as http:
                with contextlib.suppress(httpx.HTTPError):
                    worker = await worker_of(http, url)
                    if worker["index"] == index and worker["pid"] != old_pid:
                        return True
        return False

    await until(up, f"worker {index} replaced")


MATCHES = "subscription($id: ID!) { matchUpdates(athleteId: $id, first: 5) { coach { id } score } }"
SET_SKILL = """mutation($c: ID!, $s: ID!, $l: Int!) { setCoachSkill(coachId: $c, skillId: $s, level: $l) {
  __typename } }"""


async def test_match_updates_follow_mutations_served_by_either_worker(
    workers: Workers, factory: Factory
) -> None:
    skill = await factory.skill()
    athlete = await factory.athlete(looking_for_coach=True)
    async with factory.db.transaction() as conn:
        from coachgraph.stores import athletes

        await athletes.set_goals(conn, athlete_id=athlete.id, skill_ids=[skill.id])
    first, second = await factory.coach(), await factory.coach()
    await factory.teach(first.id, skill.id, level=3)
    await factory.teach(second.id, skill.id, level=2)
    gids = {to_global_id("Coach", c.id): c for c in (first, second)}

    async def both_known() -> bool:  # each worker's graph has the coaches (the outbox fed it)
        async with pinned(workers.url) as clients:
            for http in clients.values():
                data = await _matches_query(http, workers.url, athlete.id)
                if set(gids) - {m["coach"]["id"] for m in data}:
                    return False
        return True

    await until(both_known, "both workers' graphs to have the coaches")
    subscriber = await WSClient.connect(workers.url, token_for("athlete", athlete.id))
    assert (await subscriber.ack())["type"] == "connection_ack"
    await subscriber.subscribe(MATCHES, {"id": to_global_id("Athlete", athlete.id)})
    initial = await _next_matches(subscriber)
    assert [m["coach"]["id"] for m in initial][:2] == list(gids)
    admin = token_for("admin")
    async with pinned(workers.url) as clients:
        # one mutation on each worker: one of them is not the subscriber's
        for index, (coach, level) in enumerate([(second, 5), (first, 1)]):
            assert (await worker_of(clients[index], workers.url))["index"] == index
            body = (
                await clients[index].post(
                    f"{workers.url}/graphql",
                    json={
                        "query": SET_SKILL,
                        "variables": {
                            "c": to_global_id("Coach", coach.id),
                            "s": to_global_id("Skill", skill.id),
                            "l": level,
                        },
                    },
                    headers={"Authorization": f"Bearer {admin}"},
                )
            ).json()
            assert body["data"]["setCoachSkill"]["__typename"] == "Coach", body
            updated = await _next_matches(subscriber)
            ranked = [m["coach"]["id"] for m in updated][:2]
            assert ranked == list(reversed(list(gids))), (index, updated)
            if index == 1:  # first's level fell: its score with it
                scores = {m["coach"]["id"]: m["score"] for m in updated}
                before = {m["coach"]["id"]: m["score"] for m in initial}
                assert (
                    scores[to_global_id("Coach", first.id)]
                    < before[to_global_id("Coach", first.id)]
                )
    await subscriber.close()


async def _matches_query(http: httpx.AsyncClient, url: str, athlete_id: int) -> list[Any]:
    body = (
        await http.post(
            f"{url}/graphql",
            json={
                "query": "query($id: ID!) { matchCoaches(athleteId: $id, first: 5) { coach { id } } }",
                "variables": {"id": to_global_id("Athlete", athlete_id)},
            },
            headers={"Authorization": f"Bearer {token_for('admin')}"},
        )
    ).json()
    found: list[Any] = (body.get("data") or {}).get("matchCoaches") or []
    return found


async def _next_matches(client: WSClient) -> list[Any]:
    message = await client.recv()
    assert message["type"] == "next", message
    found: list[Any] = message["payload"]["data"]["matchUpdates"]
    return found


async def test_embedded_postgres_is_started_once_and_stopped_once(tmp_root: Path) -> None:
    """Without DATABASE_URL: the parent starts the embedded server, the workers use it, and a
    SIGTERM drains both workers before the parent stops it."""
    log = tmp_root / "workers-embedded.log"
    data = tmp_root / "workers-embedded"
    proc = await start_serve(cli_env(data, COACHGRAPH_JWT_SECRET=SECRET), log, "--workers", "2")
    try:
        port = await serving_port(log, proc)
        await until(lambda: log.read_text().count("Application startup complete") >= 2, "2 up")
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"http://127.0.0.1:{port}/healthz")).json()
        assert health["status"] == "ok" and health["backends"]["broker"] == "postgres"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    text = log.read_text()
    assert text.count("starting embedded PostgreSQL") == 1
    assert text.count("Application shutdown complete") == 2
    assert not (data / "postgres" / "postmaster.pid").exists()  # stopped
    with pytest.raises(OSError):
        await websockets.connect(f"ws://127.0.0.1:{port}/graphql")
