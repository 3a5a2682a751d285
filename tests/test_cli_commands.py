"""The CLI as an operator runs it, in subprocesses against real servers: `migrate` on a fresh
database (and again: nothing pending), `reindex --graph` into a Bolt server, and
`serve --demo` (seeds an empty database, prints working tokens, stops its embedded PostgreSQL
on SIGINT and SIGTERM)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from coachgraph.stores import athletes as athlete_store
from coachgraph.stores import graph_source
from coachgraph.stores.db import Database
from coachgraph.stores.migrate import available
from tests.conftest import SECRET
from tests.factories import Factory
from tests.servers import announced_port, cli_env, falkordb_server, start_serve
from tests.test_outages import kill_postgres, postgres_processes, postmaster_pid, running

DEADLINE = 120.0


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "ignore",
        "-m",
        "coachgraph.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# ---------------------------------------------------------------- migrate


@pytest.fixture
async def fresh_database(pg_dsn: str) -> AsyncIterator[str]:
    """An empty database on the session's server; dropped afterwards."""
    name = f"cli_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(pg_dsn)
        yield urlunsplit(parts._replace(path=f"/{name}"))
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_migrate_applies_pending_migrations_once(fresh_database: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, DATABASE_URL=fresh_database, COACHGRAPH_JWT_SECRET=SECRET)
    shipped = available()
    assert shipped, "the package ships migrations"

    code, out, err = await cli("migrate", env=env)
    assert code == 0, err
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in shipped)
    assert out.strip() == f"coachgraph: migrations applied: {names}"
    conn = await asyncpg.connect(fresh_database)
    try:
        first = await conn.fetch(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY 1"
        )
        assert [(r["version"], r["name"]) for r in first] == [(m.version, m.name) for m in shipped]
        for table in ("coaches", "athletes", "outbox", "projection_offsets", "media"):
            assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table), table

        code, out, err = await cli("migrate", env=env)  # idempotent: nothing pending
        assert code == 0, err
        assert out.strip() == "coachgraph: migrations applied: none pending"
        again = await conn.fetch(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY 1"
        )
        assert again == first  # nothing applied twice, not even re-stamped
    finally:
        await conn.close()


# ---------------------------------------------------------------- reindex --graph


async def graph_query(port: int, cypher: str) -> set[tuple[int, ...]]:
    """Rows of a Cypher query on the graph FalkorDB's Bolt writes, read over its Redis protocol:
    an independent reader (a second Bolt client after the CLI's would wedge FalkorDB's Bolt)."""
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        reply = await client.execute_command("GRAPH.QUERY", BOLT_GRAPH, cypher)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()
    return {tuple(int(v) for v in row) for row in reply[1]}


async def postgres_rows(db: Database, sql: str) -> set[tuple[int, ...]]:
    return {tuple(row.values()) for row in await db.pool.fetch(sql)}


# FalkorDB 4.16's Bolt ignores the database a client names: every Bolt write lands in this graph
BOLT_GRAPH = "db"
OFFSET = "graph:neo4j:cli"

PROJECTED = {  # the graph's nodes and relations, and the records they come from
    "MATCH (n:Coach) RETURN n.id": "SELECT id FROM coaches",
    "MATCH (n:Athlete) RETURN n.id": "SELECT id FROM athletes",
    "MATCH (n:Skill) RETURN n.id": "SELECT id FROM skills",
    "MATCH (n:Program) RETURN n.id": "SELECT id FROM programs",
    "MATCH (c:Coach)-[:COACHES]->(a:Athlete) RETURN c.id, a.id": (
        "SELECT coach_id, athlete_id FROM coach_athletes"
    ),
    "MATCH (c:Coach)-[:TEACHES]->(s:Skill) RETURN c.id, s.id": (
        "SELECT coach_id, skill_id FROM coach_skills"
    ),
    "MATCH (a:Athlete)-[:WANTS]->(s:Skill) RETURN a.id, s.id": (
        "SELECT athlete_id, skill_id FROM athlete_goals"
    ),
}


async def test_reindex_graph_rebuilds_the_bolt_projection(
    db: Database, factory: Factory, pg_dsn: str, tmp_root: Path, tmp_path: Path
) -> None:
    await db.pool.execute("DELETE FROM projection_offsets WHERE name = $1", OFFSET)
    goals = [await factory.skill(), await factory.skill()]
    coaches = [await factory.coach(), await factory.coach()]
    athletes = [await factory.athlete(looking_for_coach=True) for _ in range(3)]
    for coach, goal in zip(coaches, goals, strict=True):
        await factory.teach(coach.id, goal.id, level=4)
        await factory.program(coach.id, [goal.id])
    await factory.assign(coaches[0].id, athletes[0].id)
    await factory.assign(coaches[1].id, athletes[1].id)
    async with db.transaction() as conn:
        await athlete_store.set_goals(conn, athlete_id=athletes[2].id, skill_ids=[goals[0].id])

    # its own server: one Bolt client per FalkorDB process (the session's keeps one open)
    with falkordb_server(tmp_root / "falkordb-cli") as server:
        stale = 10**9  # a node no record backs, left by an earlier projection
        await graph_query(server.port, f"CREATE (:Coach {{id: {stale}}}) RETURN {stale}")
        env = cli_env(
            tmp_path,
            DATABASE_URL=pg_dsn,
            COACHGRAPH_JWT_SECRET=SECRET,
            NEO4J_URI=server.bolt_url,
            NEO4J_USER="falkordb",
            NEO4J_DATABASE="cli",
        )
        code, out, err = await cli("reindex", "--graph", env=env)
        assert code == 0, err
        assert "graph rebuilt into neo4j; 0 events pending" in out, out
        client = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            listed = await client.execute_command("GRAPH.LIST")  # type: ignore[no-untyped-call]
            assert listed == [BOLT_GRAPH.encode()]
        finally:
            await client.aclose()
        for cypher, sql in PROJECTED.items():
            projected = await graph_query(server.port, cypher)
            assert projected == await postgres_rows(db, sql), cypher
            assert projected, cypher  # the comparison was about something
        assert (stale,) not in await graph_query(server.port, "MATCH (n:Coach) RETURN n.id")
    # the position stored under the projection's name (graph:<backend>:<database>)
    stored = await graph_source.load_offset(db.pool, name=OFFSET)
    assert stored == await graph_source.horizon(db.pool)


# ---------------------------------------------------------------- serve --demo

TOKEN = re.compile(r"^\s+(admin|coach \S+|athlete \S+):\s+(\S+)$", re.M)
VIEWER = "{ viewer { role coach { id } athlete { id } } coaches { totalCount } }"


async def serve_demo(
    data: Path, stop: signal.Signals
) -> tuple[str, dict[str, str], dict[str, tuple[int, Any]]]:
    """Run `coachgraph serve --demo --port 0` until it answers, try its tokens, send `stop`;
    return its output, its tokens by role, and what each token's viewer query answered."""
    pgdata = data / "postgres"
    log_path = data / f"serve-{stop.name}.log"
    serve = await start_serve(cli_env(data), log_path, "--demo")
    try:
        port = await announced_port(log_path, serve)
        output = log_path.read_text(errors="replace")
        tokens = {label.split()[0]: token for label, token in TOKEN.findall(output)}
        assert set(tokens) == {"admin", "coach", "athlete"}, output
        answers: dict[str, tuple[int, Any]] = {}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for role, token in [*tokens.items(), ("forged", tokens["admin"][:-4] + "AAAA")]:
                response = await http.post(
                    "/graphql",
                    json={"query": VIEWER},
                    headers={"Authorization": f"Bearer {token}"},
                )
                answers[role] = response.status_code, response.json()
        postmaster = postmaster_pid(pgdata)
        assert postmaster is not None

        serve.send_signal(stop)
        status = await asyncio.wait_for(serve.wait(), DEADLINE)
        output = log_path.read_text(errors="replace")
        # a graceful stop (lifespan closed, embedded server stopped) is a clean exit
        assert status == 0, output
        assert "Traceback" not in output, output
        assert postmaster_pid(pgdata) is None and not running(postmaster)
        assert postgres_processes(pgdata.resolve()) == []
        return output, tokens, answers
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()
        kill_postgres(pgdata)


def check_answers(answers: dict[str, tuple[int, Any]], output: str) -> None:
    gids = dict(re.findall(r"^\s+(coach|athlete) (\S+):", output, re.M))
    admin_status, admin = answers["admin"]
    assert admin_status == 200 and admin["data"]["viewer"]["role"] == "ADMIN", admin
    assert admin["data"]["coaches"]["totalCount"] == 60, admin
    coach_status, coach = answers["coach"]
    assert coach_status == 200, coach
    assert coach["data"]["viewer"] == {
        "role": "COACH",
        "coach": {"id": gids["coach"]},
        "athlete": None,
    }
    athlete_status, athlete = answers["athlete"]
    assert athlete_status == 200, athlete
    assert athlete["data"]["viewer"]["athlete"] == {"id": gids["athlete"]}
    forged_status, _ = answers["forged"]
    assert forged_status == 401  # the tokens work because they are signed, not because any does


async def test_serve_demo_seeds_prints_tokens_and_stops_cleanly(tmp_root: Path) -> None:
    data = (tmp_root / f"demo-{uuid.uuid4().hex[:8]}").resolve()
    data.mkdir(parents=True)

    output, _, answers = await serve_demo(data, signal.SIGINT)
    assert "empty database; seeding demo data" in output
    check_answers(answers, output)

    # a second start on the same data: nothing seeded again, fresh tokens that work
    output, _, answers = await serve_demo(data, signal.SIGTERM)
    assert "seeding" not in output
    check_answers(answers, output)


# ---------------------------------------------------------------- reindex --vectors


async def test_reindex_vectors_rebuilds_them_and_resumes_a_cut_off_rebuild(
    db: Database, factory: Factory, pg_dsn: str, tmp_path: Path
) -> None:
    goal = await factory.skill()
    coach = await factory.coach()
    athletes = [await factory.athlete() for _ in range(3)]
    for athlete in athletes:
        async with db.transaction() as conn:
            await athlete_store.set_goals(conn, athlete_id=athlete.id, skill_ids=[goal.id])
        await factory.assign(coach.id, athlete.id)
    # a rebuild cut off after the first athlete, begun after every event so far: it wrote
    # nothing (the first athlete's vector is missing, as if that chunk had been lost)
    began = await graph_source.horizon(db.pool)
    await db.pool.execute(
        "INSERT INTO collab_rebuild (name, after_id, dims, last_txid, last_id) "
        "VALUES ('collab', $1, 128, $2::text::xid8, $3)",
        athletes[0].id,
        str(began.txid),
        began.id,
    )
    env = cli_env(tmp_path, DATABASE_URL=pg_dsn, COACHGRAPH_JWT_SECRET=SECRET)
    code, out, err = await cli("reindex", "--vectors", env=env)
    assert code == 0, err
    assert "collaborative vectors rebuilt: 2 athletes" in out, out  # resumed after the first
    kinds = await postgres_rows(db, "SELECT id FROM collab_vectors WHERE kind = 'athlete'")
    assert kinds == {(a.id,) for a in athletes[1:]}  # resumed: the first was not done again
    assert await postgres_rows(db, "SELECT id FROM collab_vectors WHERE kind = 'coach'") == {
        (coach.id,)
    }
    assert await db.pool.fetchval("SELECT count(*) FROM collab_rebuild") == 0

    code, out, err = await cli("reindex", "--vectors", env=env)  # from scratch this time
    assert code == 0, err
    assert "collaborative vectors rebuilt: 3 athletes" in out, out
    assert await graph_source.load_offset(db.pool, name="collab") is not None
    # then the blend's weights: too little history here, so the content weights, stored
    assert "blend weights fitted" in out and "fewer than 200" in out, out
    assert await db.pool.fetchval("SELECT w_learned FROM collab_blend_weights LIMIT 1") == 0
