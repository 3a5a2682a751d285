"""eraseAthlete: afterwards each store, asked directly, holds nothing of the athlete (and
everything of the others); a crash between stores is finished by `resume`; the athlete's
tokens are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from neo4j import AsyncDriver

from coachgraph.graph.memory import ATHLETE, MemoryGraph, key
from coachgraph.graph.model import GraphStore
from coachgraph.graph.neo4j import Neo4jGraph
from coachgraph.graph.projector import Projector
from coachgraph.ids import to_global_id
from coachgraph.lifecycle import erasure
from coachgraph.media.local import LocalMediaStore
from coachgraph.media.model import MediaStore, new_key
from coachgraph.media.s3 import S3MediaStore
from coachgraph.search.postgres import PostgresSearch
from coachgraph.stores import media as media_rows
from coachgraph.stores import metrics, programs, sessions
from coachgraph.stores.db import Database
from coachgraph.subscriptions.redis import STREAM, RedisBroker
from coachgraph.subscriptions.topics import metrics_topic, status_topic
from tests.conftest import SECRET, GraphQLClient, token_for
from tests.factories import Factory
from tests.graph.conftest import make_graph
from tests.media.conftest import BUCKET, S3_CREDENTIALS, make_bucket

SETUPS = [("networkx", "local"), ("neo4j", "s3")]


@dataclass
class World:
    db: Database
    graph: GraphStore
    projector: Projector
    search: PostgresSearch
    media: MediaStore
    broker: RedisBroker

    def stores(self, crash_after: str | None = None) -> erasure.Stores:
        return erasure.Stores(
            self.db,
            self.media,
            self.broker,
            self.search,
            self.projector,
            key=SECRET,
            crash_after=crash_after,
        )


@pytest.fixture(params=SETUPS, ids=["-".join(s) for s in SETUPS])
async def world(
    request: pytest.FixtureRequest,
    db: Database,
    bolt_driver: AsyncDriver,
    redis_url: str,
    settings: Any,
    tmp_path: Path,
) -> AsyncIterator[World]:
    graph_kind, media_kind = request.param
    graph = await make_graph(graph_kind, bolt_driver)
    search = PostgresSearch(db)
    projector = Projector(db, graph, name=f"erasure:{graph.name}", batch_size=50, sinks=[search])
    store: MediaStore
    if media_kind == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        await make_bucket(endpoint)
        store = S3MediaStore(
            settings.with_(
                s3_bucket=BUCKET, s3_endpoint_url=endpoint, aws_region="us-east-1", **S3_CREDENTIALS
            )
        )
    else:
        store = LocalMediaStore(tmp_path / "media", secret=SECRET)
    await store.start()
    broker = RedisBroker(redis_url)
    await broker.start()
    try:
        await projector.prepare()
        yield World(db, graph, projector, search, store, broker)
    finally:
        await broker.close()
        await store.close()
        await graph.close()


@dataclass
class Person:
    athlete_id: int
    session_ids: list[int]
    media_keys: list[str]


async def put_bytes(store: MediaStore, key: str, data: bytes) -> None:
    if isinstance(store, LocalMediaStore):

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        await store.receive(
            key=key, content_type="image/png", size_bytes=len(data), chunks=chunks()
        )
    else:
        assert isinstance(store, S3MediaStore)
        await store._client.put_object(Bucket=store.bucket, Key=key, Body=data)


async def person(
    world: World, factory: Factory, coach_id: int, program_id: int, tag: str
) -> Person:
    """An athlete with skills, goals, an enrollment, its coach, two sessions (samples, rollups),
    an avatar and a session video (bytes stored), and broker entries for its sessions."""
    skill = await factory.skill(name=f"Skill {tag}")
    athlete = await factory.athlete(name=f"Athlete {tag}")
    await factory.assign(coach_id, athlete.id)
    await factory.learn(athlete.id, skill.id)
    async with factory.db.transaction() as conn:
        await programs.enroll(conn, athlete_id=athlete.id, program_id=program_id)
    ids = []
    for n in range(2):
        scheduled = await factory.session(coach_id, athlete.id)
        async with factory.db.transaction() as conn:
            await sessions.transition(conn, session_id=scheduled.id, to="LIVE")
        now = datetime.now(UTC)
        async with factory.db.transaction() as conn:
            await metrics.append(
                conn,
                session_id=scheduled.id,
                samples=[("HEART_RATE", now + timedelta(seconds=i), 100.0 + i) for i in range(30)],
            )
        if n == 0:
            async with factory.db.transaction() as conn:
                await sessions.transition(conn, session_id=scheduled.id, to="COMPLETED")
        ids.append(scheduled.id)
    keys = []
    for owner_type, owner_id in (("Athlete", athlete.id), ("TrainingSession", ids[0])):
        key = new_key(
            kind="IMAGE", owner_type=owner_type, owner_id=owner_id, content_type="image/png"
        )
        async with factory.db.transaction() as conn:
            await media_rows.create(
                conn,
                owner_type=owner_type,
                owner_id=owner_id,
                kind="IMAGE",
                content_type="image/png",
                size_bytes=4,
                storage_key=key,
                created_by=None,
            )
        await put_bytes(world.media, key, b"\x89PNG")
        keys.append(key)
    for sid in ids:
        await world.broker.publish(metrics_topic(sid), {"samples": [[1, "HEART_RATE", 0, 100.0]]})
        await world.broker.publish(status_topic(sid), {"status": "LIVE"})
    return Person(athlete.id, ids, keys)


async def in_graph(graph: GraphStore, athlete_id: int) -> int:
    if isinstance(graph, MemoryGraph):
        found = athlete_id in graph.athletes
        node = key(ATHLETE, athlete_id)
        edges = sum(rel.degree(node) for rel in graph.rel.values() if node in rel)
        return int(found) + edges
    assert isinstance(graph, Neo4jGraph)
    rows = await graph._run("MATCH (a:Athlete {id: $id}) RETURN count(a) AS n", id=athlete_id)
    return int(rows[0]["n"])


async def in_postgres(db: Database, p: Person) -> dict[str, int]:
    """Rows anywhere that name the athlete or one of its sessions."""
    found = {}
    columns = await db.pool.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND column_name IN ('athlete_id', 'session_id') "
        "AND table_name NOT IN ('erasures') "
        "AND table_name NOT LIKE 'metric_samples_%' AND table_name NOT LIKE 'metric_rollups_%'"
    )
    for r in columns:
        ids = [p.athlete_id] if r["column_name"] == "athlete_id" else p.session_ids
        found[r["table_name"]] = await db.pool.fetchval(
            f"SELECT count(*) FROM {r['table_name']} WHERE {r['column_name']} = ANY($1::bigint[])",
            ids,
        )
    found["athletes"] = await db.pool.fetchval(
        "SELECT count(*) FROM athletes WHERE id = $1", p.athlete_id
    )
    found["training_sessions"] = await db.pool.fetchval(
        "SELECT count(*) FROM training_sessions WHERE id = ANY($1::bigint[])", p.session_ids
    )
    found["media"] = await db.pool.fetchval(
        "SELECT count(*) FROM media WHERE storage_key = ANY($1::text[])", p.media_keys
    )
    found["search_documents"] = await db.pool.fetchval(
        "SELECT count(*) FROM search_documents WHERE kind = 'ATHLETE' AND id = $1", p.athlete_id
    )
    return found


async def in_redis(broker: RedisBroker, p: Person) -> int:
    topics = {t(s) for s in p.session_ids for t in (metrics_topic, status_topic)}
    entries = await broker._redis.xrange(STREAM)
    return sum(1 for _, fields in entries if fields[b"t"].decode() in topics)


async def in_media(store: MediaStore, p: Person) -> int:
    return len([key for key in p.media_keys if await store.stat(key=key) is not None])


async def everywhere(world: World, p: Person) -> dict[str, int]:
    found = await in_postgres(world.db, p)
    found["graph"] = await in_graph(world.graph, p.athlete_id)
    found["media"] += await in_media(world.media, p)
    found["redis"] = await in_redis(world.broker, p)
    return {k: v for k, v in found.items() if v}


async def two_people(world: World, factory: Factory) -> tuple[int, int, Person, Person]:
    coach = await factory.coach(capacity=5)
    program = await factory.program(coach.id, [])
    gone = await person(world, factory, coach.id, program.id, "gone")
    kept = await person(world, factory, coach.id, program.id, "kept")
    await world.projector.catch_up()
    return coach.id, program.id, gone, kept


def names(world: World) -> set[str]:
    return {
        "postgres",
        f"graph:{world.graph.name}",
        "search:postgres",
        f"media:{world.media.name}",
        "broker:redis",
    }


async def test_an_erased_athlete_is_in_no_store_and_the_others_stay(
    world: World, factory: Factory
) -> None:
    coach_id, program_id, gone, kept = await two_people(world, factory)
    before = await everywhere(world, gone)
    assert {"athletes", "graph", "media", "redis", "metric_samples", "metric_rollups"} <= set(
        before
    )
    assert before["search_documents"] == 1
    kept_before = await everywhere(world, kept)

    done = await erasure.erase(world.stores(), athlete_id=gone.athlete_id)

    assert set(done.stores) == names(world) and done.finished_at is not None
    assert await everywhere(world, gone) == {}
    assert await everywhere(world, kept) == kept_before
    counts = await world.db.pool.fetchrow(
        "SELECT (SELECT active_athlete_count FROM coaches WHERE id = $1) AS coached, "
        "(SELECT enrollment_count FROM programs WHERE id = $2) AS enrolled",
        coach_id,
        program_id,
    )
    assert dict(counts) == {"coached": 1, "enrolled": 1}
    if isinstance(world.graph, MemoryGraph):
        assert world.graph.coaches[coach_id].active == 1
    # an erasure asked again finds nothing to erase, and says so
    with pytest.raises(Exception, match=r"not found|Athlete"):
        await erasure.erase(world.stores(), athlete_id=gone.athlete_id)


@pytest.mark.parametrize("crash", ["postgres", "graph", "media", "broker"])
async def test_a_crash_between_stores_is_finished_on_restart(
    world: World, factory: Factory, crash: str
) -> None:
    _, _, gone, kept = await two_people(world, factory)
    kept_before = await everywhere(world, kept)
    at = (
        "postgres"
        if crash == "postgres"
        else f"{crash}:{world.stores().names()[crash].split(':')[1]}"
    )
    with pytest.raises(erasure.CrashInjected):
        await erasure.erase(world.stores(crash_after=at), athlete_id=gone.athlete_id)
    pending = await world.db.pool.fetchval(
        "SELECT count(*) FROM erasures WHERE finished_at IS NULL"
    )
    assert pending == 1
    assert (
        await world.db.pool.fetchval("SELECT count(*) FROM athletes WHERE id = $1", gone.athlete_id)
        == 0
    )  # the records went at once

    restarted = world.stores()  # as a restart builds it
    assert await erasure.resume(restarted) == 1
    assert gone.athlete_id in restarted.erased
    assert await everywhere(world, gone) == {}
    assert await everywhere(world, kept) == kept_before
    row = await world.db.pool.fetchrow("SELECT stores, finished_at FROM erasures")
    assert set(row["stores"]) == names(world) and row["finished_at"] is not None
    assert await erasure.resume(restarted) == 0


async def test_erase_athlete_over_graphql_and_its_token_stops_working(
    gql: GraphQLClient, factory: Factory
) -> None:
    athlete = await factory.athlete()
    other = await factory.athlete()
    token = token_for("athlete", athlete.id)
    mutation = """mutation($id: ID!) { eraseAthlete(id: $id) {
      __typename ... on Erasure { erasedAt stores } ... on UserError { message } } }"""
    viewer = "{ viewer { athlete { id } } }"
    assert (await gql(viewer, token=token))["data"]["viewer"]["athlete"] is not None

    denied = await gql(mutation, {"id": to_global_id("Athlete", other.id)}, token)
    assert denied["data"]["eraseAthlete"]["__typename"] == "PermissionDeniedError"
    coach_token = token_for("coach", (await factory.coach()).id)
    refused = await gql(mutation, {"id": to_global_id("Athlete", athlete.id)}, coach_token)
    assert refused["data"]["eraseAthlete"]["__typename"] == "PermissionDeniedError"
    assert await factory.count("athletes") == 2

    done = await gql(mutation, {"id": to_global_id("Athlete", athlete.id)}, token)
    answer = done["data"]["eraseAthlete"]
    assert answer["__typename"] == "Erasure"
    assert set(answer["stores"]) == {
        "postgres",
        "graph:networkx",
        "search:postgres",
        "media:local",
        "broker:memory",
    }
    assert await factory.count("athletes") == 1

    response = await gql.raw(viewer, token=token)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    again = await gql(mutation, {"id": to_global_id("Athlete", other.id)}, token_for("admin"))
    assert again["data"]["eraseAthlete"]["__typename"] == "Erasure"
    missing = await gql(mutation, {"id": to_global_id("Athlete", other.id)}, token_for("admin"))
    assert missing["data"]["eraseAthlete"]["__typename"] == "NotFoundError"


async def test_search_finds_nothing_of_an_erased_athlete_on_either_backend(
    sgql: GraphQLClient,
    project: Callable[[], Awaitable[None]],
    factory: Factory,
    search_backend: Any,
) -> None:
    """The search contract: Postgres always, Meilisearch when MEILI_URL is set."""
    gone = await factory.athlete(name="Zyxwvut Erased")
    await factory.athlete(name="Zyxwvut Kept")
    await project()
    query = """{ search(query: "Zyxwvut", kinds: [ATHLETE]) {
      totalCount edges { node { ... on Athlete { name } } } } }"""
    admin = token_for("admin")
    before = (await sgql(query, token=admin))["data"]["search"]
    assert before["totalCount"] == 2
    erase = "mutation($id: ID!) { eraseAthlete(id: $id) { ... on Erasure { stores } } }"
    answer = await sgql(erase, {"id": to_global_id("Athlete", gone.id)}, admin)
    assert (
        f"search:{search_backend.resources.search.name}" in answer["data"]["eraseAthlete"]["stores"]
    )
    after = (await sgql(query, token=admin))["data"]["search"]
    assert [e["node"]["name"] for e in after["edges"]] == ["Zyxwvut Kept"]
    search_backend.resources.lifecycle.erased.ids.discard(gone.id)
