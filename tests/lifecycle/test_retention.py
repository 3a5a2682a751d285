"""Retention: old raw samples rolled up into minute buckets, their partitions dropped; `series`
and `summary` the same before and after; a run killed anywhere, rerun, converges."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from coachgraph.ids import to_global_id
from coachgraph.stores import metrics, retention, sessions
from coachgraph.stores.db import Database
from coachgraph.stores.migrate import available, migrate
from coachgraph.stores.records import SessionRecord
from tests.conftest import SECRET, GraphQLClient, token_for
from tests.factories import Factory
from tests.servers import cli_env

POLICY = retention.Policy(raw_days=30, rollup_days=365, ahead_days=7)
QUERY = """query($id: ID!) { node(id: $id) { ... on TrainingSession {
  samples(first: 5) { totalCount compacted edges { node { value } } }
  m1: series(kind: HEART_RATE, bucketSeconds: 60) { start count min max avg }
  m2: series(kind: HEART_RATE, bucketSeconds: 120) { start count min max avg }
  p5: series(kind: POWER, bucketSeconds: 300) { start count min max avg }
  summary { sampleCount avgHeartRate maxHeartRate durationSeconds } } } }"""


async def old_session(
    factory: Factory, *, started: datetime, n: int, complete: bool = True
) -> SessionRecord:
    """A session that ran at `started`, with `n` heart-rate and n // 3 power samples stored
    through the store layer (whole numbers: sums and averages are exact either way)."""
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    scheduled = await factory.session(coach.id, athlete.id)
    async with factory.db.transaction() as conn:
        live = await sessions.transition(conn, session_id=scheduled.id, to="LIVE")
        await conn.execute(
            "UPDATE training_sessions SET started_at = $2, scheduled_at = $2 WHERE id = $1",
            live.id,
            started,
        )
    batch = [
        ("HEART_RATE", started + timedelta(seconds=7 * i), float(90 + i % 50)) for i in range(n)
    ]
    batch += [("POWER", started + timedelta(seconds=21 * i), float(200 + i)) for i in range(n // 3)]
    for i in range(0, len(batch), 100):  # several batches: rollups merge across them
        async with factory.db.transaction() as conn:
            await metrics.append(conn, session_id=live.id, samples=batch[i : i + 100])
    if complete:
        async with factory.db.transaction() as conn:
            await sessions.transition(conn, session_id=live.id, to="COMPLETED")
            await conn.execute(
                "UPDATE training_sessions SET ended_at = $2 WHERE id = $1",
                live.id,
                started + timedelta(hours=1),
            )
    return live


async def read(gql: GraphQLClient, session_id: int) -> dict[str, Any]:
    sid = to_global_id("TrainingSession", session_id)
    answer = await gql(QUERY, {"id": sid}, token_for("admin"))
    assert "errors" not in answer, answer
    node: dict[str, Any] = answer["data"]["node"]
    # from the session row, not the samples; a LIVE session's grows between two reads
    node["summary"].pop("durationSeconds")
    return node


async def raw_count(db: Database, session_id: int) -> int:
    n: int = await db.pool.fetchval(
        "SELECT count(*) FROM metric_samples WHERE session_id = $1", session_id
    )
    return n


async def partitions(db: Database) -> set[str]:
    rows = await db.pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent IN ('metric_samples'::regclass, 'metric_rollups'::regclass)"
    )
    return {r[0] for r in rows}


async def test_old_samples_are_rolled_up_their_partitions_dropped_and_series_unchanged(
    gql: GraphQLClient, factory: Factory
) -> None:
    now = datetime.now(UTC)
    # partitions as the app made them 20 days ago: the days from 50 to 13 days back
    await retention.ensure_partitions(factory.db, now=now - timedelta(days=20), policy=POLICY)
    in_partition = await old_session(factory, started=now - timedelta(days=40), n=400)
    live_old = await old_session(factory, started=now - timedelta(days=35), n=200, complete=False)
    stray = await old_session(factory, started=now - timedelta(days=90), n=150)  # no partition
    recent = await old_session(factory, started=now - timedelta(days=2), n=120)
    day = retention.day_partition((now - timedelta(days=40)).date())
    assert day in await partitions(factory.db)
    assert await factory.db.pool.fetchval(f"SELECT count(*) FROM {day}") > 0
    before = {s.id: await read(gql, s.id) for s in (in_partition, live_old, stray, recent)}
    assert before[in_partition.id]["summary"]["sampleCount"] == 400 + 133
    assert before[recent.id]["samples"]["compacted"] is False

    report = await retention.run(factory.db, now=now, policy=POLICY)

    assert day in report.dropped and day not in await partitions(factory.db)
    ahead = retention.day_partition((now + timedelta(days=7)).date())
    assert ahead in await partitions(factory.db)  # created ahead
    assert report.deleted_stray_samples == 150 + 50
    for old in (in_partition, live_old, stray):
        assert await raw_count(factory.db, old.id) == 0
        after = await read(gql, old.id)
        samples = after.pop("samples")
        assert samples == {"totalCount": 0, "compacted": True, "edges": []}
        expected = dict(before[old.id])
        expected.pop("samples")
        assert after == expected
    assert await read(gql, recent.id) == before[recent.id]
    assert await raw_count(factory.db, recent.id) == 120 + 40
    rolled = await factory.db.pool.fetchval(
        "SELECT sum(count) FROM metric_rollups WHERE session_id = $1", in_partition.id
    )
    assert rolled == 400 + 133  # every sample once, across the batches it came in
    # a compacted session answers whole minutes only, and says why
    sid = to_global_id("TrainingSession", stray.id)
    refused = await gql(
        "query($id: ID!) { node(id: $id) { ... on TrainingSession { "
        "series(kind: HEART_RATE, bucketSeconds: 30) { count } } } }",
        {"id": sid},
        token_for("admin"),
    )
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "multiple of 60" in refused["errors"][0]["message"]

    again = await retention.run(factory.db, now=now, policy=POLICY)  # idempotent
    assert again.rolled_up_sessions == 0 and again.deleted_stray_samples == 0
    assert (await read(gql, in_partition.id))["m1"] == before[in_partition.id]["m1"]

    # a year on, the rollups go too (their monthly partitions, and strays in the default)
    late = await retention.run(factory.db, now=now + timedelta(days=500), policy=POLICY)
    assert any(name.startswith("metric_rollups_p") for name in late.dropped)
    left = await factory.db.pool.fetchval(
        "SELECT count(*) FROM metric_rollups WHERE session_id = ANY($1::bigint[])",
        [in_partition.id, stray.id, live_old.id],
    )
    assert left == 0
    assert (await read(gql, stray.id))["m1"] == []


async def test_a_live_compacted_session_keeps_its_new_samples(
    gql: GraphQLClient, factory: Factory
) -> None:
    now = datetime.now(UTC)
    live = await old_session(factory, started=now - timedelta(days=45), n=90, complete=False)
    await retention.run(factory.db, now=now, policy=POLICY)
    later = [
        ("HEART_RATE", now - timedelta(days=45) + timedelta(seconds=700 + i), 500.0)
        for i in range(3)
    ]
    async with factory.db.transaction() as conn:
        await metrics.append(conn, session_id=live.id, samples=later)
    node = await read(gql, live.id)
    assert node["samples"]["compacted"] is True and node["samples"]["totalCount"] == 3
    assert node["summary"]["sampleCount"] == 90 + 30 + 3
    assert node["summary"]["maxHeartRate"] == 500
    assert sum(b["count"] for b in node["m1"]) == 93


async def test_a_run_killed_anywhere_converges_when_rerun(
    gql: GraphQLClient, factory: Factory
) -> None:
    now = datetime.now(UTC)
    await retention.ensure_partitions(factory.db, now=now - timedelta(days=25), policy=POLICY)
    made = [
        await old_session(factory, started=now - timedelta(days=d), n=120, complete=d % 2 == 0)
        for d in (33, 34, 40, 70)
    ]
    before = {s.id: await read(gql, s.id) for s in made}
    for steps in range(0, 60, 3):  # cancelled after more and more event-loop turns
        task = asyncio.create_task(retention.run(factory.db, now=now, policy=POLICY))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await retention.run(factory.db, now=now, policy=POLICY)
    for s in made:
        assert await raw_count(factory.db, s.id) == 0
        node = await read(gql, s.id)
        assert node["samples"]["compacted"] is True
        for answer in (node, before[s.id]):
            answer.pop("samples")
        assert node == before[s.id]
        total = await factory.db.pool.fetchval(
            "SELECT sum(count) FROM metric_rollups WHERE session_id = $1", s.id
        )
        assert total == 120 + 40


async def test_an_unpartitioned_table_is_migrated_and_its_rows_kept(
    settings: Any, app_resources: Any
) -> None:
    """The embedded database of `serve --demo` has a plain metric_samples: after 0010 it is
    the DEFAULT partition; creating partitions moves its rows into them, old ones roll up."""
    admin: Database = app_resources[1].db
    name = f"migrate_{datetime.now(UTC):%H%M%S%f}"
    await admin.pool.execute(f"CREATE DATABASE {name}")
    url = urlsplit(str(settings.database_url))
    dsn = urlunsplit(url._replace(path=f"/{name}"))
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        async with db.pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for m in available():
                if m.version < 10:
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations VALUES ($1, $2)", m.version, m.name
                    )
            assert not await conn.fetchval(
                "SELECT relkind = 'p' FROM pg_class WHERE relname = 'metric_samples'"
            )
            now = datetime.now(UTC)
            ids = []
            for days in (3, 60):
                await conn.execute(
                    "INSERT INTO coaches (name, sports, timezone, capacity) "
                    "VALUES ('c', '{run}', 'UTC', 5)"
                )
                await conn.execute(
                    "INSERT INTO athletes (name, sport, timezone, level) VALUES ('a', 'run', 'UTC', 1)"
                )
                sid = await conn.fetchval(
                    "INSERT INTO training_sessions (coach_id, athlete_id, status, scheduled_at, "
                    "started_at, ended_at, sample_seq) SELECT max(c.id), max(a.id), 'COMPLETED', "
                    "$1::timestamptz, $1, $1::timestamptz + interval '1 hour', 100 FROM coaches c, athletes a RETURNING id",
                    now - timedelta(days=days),
                )
                await conn.executemany(
                    "INSERT INTO metric_samples VALUES ($1, $2, 'HEART_RATE', $3, $4)",
                    [
                        (sid, i + 1, now - timedelta(days=days) + timedelta(seconds=i), float(i))
                        for i in range(100)
                    ],
                )
                ids.append(sid)
            applied = await migrate(conn)
            assert [m.version for m in applied if m.version == 10] == [10]
            assert await conn.fetchval("SELECT count(*) FROM metric_samples") == 200
        report = await retention.run(db, now=now, policy=POLICY)
        assert report.deleted_stray_samples == 100
        recent_day = retention.day_partition((now - timedelta(days=3)).date())
        assert await db.pool.fetchval(f"SELECT count(*) FROM {recent_day}") == 100
        assert await db.pool.fetchval("SELECT count(*) FROM metric_samples_default") == 0
        old = await metrics.series(
            db.pool, session_id=ids[1], kind="HEART_RATE", bucket_seconds=60, limit=100
        )
        assert [b.count for b in old] == [60, 40]
        assert old[0].avg == pytest.approx(29.5)
    finally:
        await db.close()
        await admin.pool.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def test_the_retention_command_applies_the_policy_as_of_now(
    pg_dsn: str, tmp_path: Path
) -> None:
    """`coachgraph retention --now T` on a database of its own: partitions around T, a bad
    time refused with a clear message and nothing done."""
    from tests.test_cli_commands import cli

    name = f"retention_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = urlunsplit(urlsplit(pg_dsn)._replace(path=f"/{name}"))
        env = cli_env(tmp_path, DATABASE_URL=dsn, COACHGRAPH_JWT_SECRET=SECRET)
        code, out, err = await cli("retention", "--now", "yesterday", env=env)
        assert code == 2 and "ISO 8601" in err
        code, out, err = await cli("retention", "--now", "2030-06-15T12:00:00", env=env)
        assert code == 0, err
        assert out.startswith("coachgraph: retention: 41 partitions created")  # 38 days, 3 months
        conn = await asyncpg.connect(dsn)
        try:
            for made in ("metric_samples_p20300516", "metric_samples_p20300622"):
                assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", made)
        finally:
            await conn.close()
        code, out, err = await cli("retention", "--now", "2030-06-15T12:00:00", env=env)
        assert code == 0 and "0 partitions created" in out  # idempotent
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
