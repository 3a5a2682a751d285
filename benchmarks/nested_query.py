"""Coach dashboard over real HTTP: our GraphQL endpoint (compiled execution, and the old
graphql-core path) vs hand-written SQL vs bare Strawberry.

    python -m benchmarks.nested_query [--coaches 500 --athletes 10000] [--seconds 8]

One server process (uvicorn, one event loop) serves, against one database:
  /ours/graphql  the coachgraph app (auth, context, loaders, policy, Relay, limits), operations
                 run through compiled plans (coachgraph.engine; the default)
  /old/graphql   the same app built with `compiled_execution=False`: graphql-core executes
                 (it shares the resources of /ours: one pool, one graph, the same loaders)
  /raw           Starlette + asyncpg: the same SQL, JSON built by hand, json.dumps
  /bare/graphql  bare Strawberry, plain resolvers over the same rows already in memory
  /plain         a plain Starlette JSON route (beside `{ __typename }`)
A second process drives each with the same load, the endpoints interleaved so that the
shared machine's drift falls on all alike: at c=1 one request to each in turn, at c=8 two-second
slices in turn (`--seconds` per endpoint in all). All four return the same JSON (checked;
/ours and /old byte for byte).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import strawberry

QUERY = """{ coaches(first: 20) { edges { node {
  id name
  programs { id title }
  athletes(first: 10) { edges { node { id name skills { level skill { id name } } } } }
} } } }"""
TYPENAME = "{ __typename }"


# --------------------------------------------------------------------------- server side
def make_server_app(dsn: str, secret: str) -> Any:
    import asyncpg
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route
    from strawberry.asgi import GraphQL

    from coachgraph.app import create_app
    from coachgraph.config import Limits, Settings
    from coachgraph.ids import to_global_id

    # the rate limit stays on (its cost is measured) but high enough not to refuse the load
    limits = Limits(rate_limit_per_minute=10**9, rate_limit_burst=10**9)
    settings = Settings(
        data_dir=Path(tempfile.gettempdir()),
        jwt_secret=secret,
        database_url=dsn,
        graphiql=False,
        limits=limits,
    )
    ours = create_app(settings, count_statements=True)
    # the old path: its own schema (graphql-core executes), no lifespan of its own: its routes
    # read the resources ours opens from the request's state, so both share pool and loaders
    old = create_app(replace(settings, compiled_execution=False), count_statements=True)
    raw_pool: dict[str, Any] = {}
    db_seconds: list[float] = []

    async def fetch_dashboard(
        pool: Any,
    ) -> tuple[list[Any], dict[int, Any], dict[int, Any], dict[int, Any]]:
        """The same four statements the loaders issue, timed."""
        started = time.perf_counter()
        coaches = await pool.fetch("SELECT id, name FROM coaches WHERE id > 0 ORDER BY id LIMIT 21")
        coaches = coaches[:20]
        ids = [c["id"] for c in coaches]
        programs, athletes = await asyncio.gather(
            pool.fetch(
                "SELECT id, coach_id, title FROM programs WHERE coach_id = ANY($1::bigint[]) "
                "ORDER BY coach_id, id",
                ids,
            ),
            pool.fetch(
                """SELECT p.parent, a.id, a.name FROM unnest($1::bigint[]) AS p(parent)
                   LEFT JOIN LATERAL (SELECT a.id, a.name FROM coach_athletes ca
                     JOIN athletes a ON a.id = ca.athlete_id WHERE ca.coach_id = p.parent
                     ORDER BY ca.athlete_id LIMIT 11) a ON true""",
                ids,
            ),
        )
        by_coach: dict[int, list[Any]] = {i: [] for i in ids}
        for row in athletes:
            if row["id"] is not None and len(by_coach[row["parent"]]) < 10:
                by_coach[row["parent"]].append(row)
        athlete_ids = [a["id"] for rows in by_coach.values() for a in rows]
        skills = await pool.fetch(
            "SELECT x.athlete_id, x.level, s.id, s.name FROM athlete_skills x "
            "JOIN skills s ON s.id = x.skill_id WHERE x.athlete_id = ANY($1::bigint[]) "
            "ORDER BY x.athlete_id, s.id",
            athlete_ids,
        )
        db_seconds.append(time.perf_counter() - started)
        progs: dict[int, list[Any]] = {i: [] for i in ids}
        for row in programs:
            progs[row["coach_id"]].append(row)
        skill_map: dict[int, list[Any]] = {a: [] for a in athlete_ids}
        for row in skills:
            skill_map[row["athlete_id"]].append(row)
        return coaches, progs, by_coach, skill_map

    def shape(
        coaches: list[Any],
        progs: dict[int, Any],
        by_coach: dict[int, Any],
        skill_map: dict[int, Any],
    ) -> dict[str, Any]:
        return {
            "data": {
                "coaches": {
                    "edges": [
                        {
                            "node": {
                                "id": to_global_id("Coach", c["id"]),
                                "name": c["name"],
                                "programs": [
                                    {"id": to_global_id("Program", p["id"]), "title": p["title"]}
                                    for p in progs[c["id"]]
                                ],
                                "athletes": {
                                    "edges": [
                                        {
                                            "node": {
                                                "id": to_global_id("Athlete", a["id"]),
                                                "name": a["name"],
                                                "skills": [
                                                    {
                                                        "level": s["level"],
                                                        "skill": {
                                                            "id": to_global_id("Skill", s["id"]),
                                                            "name": s["name"],
                                                        },
                                                    }
                                                    for s in skill_map[a["id"]]
                                                ],
                                            }
                                        }
                                        for a in by_coach[c["id"]]
                                    ]
                                },
                            }
                        }
                        for c in coaches
                    ]
                }
            }
        }

    async def raw(request: Request) -> Response:
        body = shape(*await fetch_dashboard(raw_pool["pool"]))
        return Response(json.dumps(body), media_type="application/json")

    async def plain(request: Request) -> JSONResponse:
        return JSONResponse({"data": {"__typename": "Query"}})

    async def stats(request: Request) -> JSONResponse:
        resources = request.state.resources
        answer = {
            "statements": await resources.db.settle(),
            "raw_db_ms": [s * 1000 for s in db_seconds],
            "engine": {"ours": engine_of(ours).stats(), "old": engine_of(old).stats()},
        }
        if request.query_params.get("reset"):
            db_seconds.clear()
        return JSONResponse(answer)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with ours.router.lifespan_context(ours) as state:
            raw_pool["pool"] = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
            # the in-memory rows for the bare engine: loaded once, never touched again
            BARE["data"] = shape(*await fetch_dashboard(raw_pool["pool"]))
            db_seconds.clear()
            try:
                yield dict(state or {})
            finally:
                await raw_pool["pool"].close()

    bare = GraphQL(strawberry.Schema(query=BareQuery), graphql_ide=None)
    return Starlette(
        routes=[
            Mount("/ours", ours),
            Mount("/old", old),
            Route("/raw", raw, methods=["POST"]),
            Route("/bare/graphql", bare, methods=["POST"]),
            Route("/plain", plain, methods=["POST"]),
            Route("/stats", stats),
        ],
        lifespan=lifespan,
    )


@strawberry.type
class SkillT:
    id: strawberry.ID
    name: str


@strawberry.type
class AthleteSkillT:
    level: int
    skill: SkillT


@strawberry.type
class AthleteT:
    id: strawberry.ID
    name: str
    skills: list[AthleteSkillT]


@strawberry.type
class AthleteEdgeT:
    node: AthleteT


@strawberry.type
class AthleteConnT:
    edges: list[AthleteEdgeT]


@strawberry.type
class ProgramT:
    id: strawberry.ID
    title: str


@strawberry.type
class CoachT:
    id: strawberry.ID
    name: str
    programs: list[ProgramT]
    rows: strawberry.Private[list[AthleteEdgeT]]

    @strawberry.field
    def athletes(self, first: int = 20) -> AthleteConnT:
        return AthleteConnT(edges=self.rows[:first])


@strawberry.type
class CoachEdgeT:
    node: CoachT


@strawberry.type
class CoachConnT:
    edges: list[CoachEdgeT]


def bare_objects(data: dict[str, Any]) -> list[CoachEdgeT]:
    """Typed objects built once from the rows, so the engine alone is measured."""
    edges = []
    for e in data["data"]["coaches"]["edges"]:
        n = e["node"]
        athletes = [
            AthleteEdgeT(
                node=AthleteT(
                    id=a["node"]["id"],
                    name=a["node"]["name"],
                    skills=[
                        AthleteSkillT(level=s["level"], skill=SkillT(**s["skill"]))
                        for s in a["node"]["skills"]
                    ],
                )
            )
            for a in n["athletes"]["edges"]
        ]
        programs = [ProgramT(**p) for p in n["programs"]]
        edges.append(
            CoachEdgeT(node=CoachT(id=n["id"], name=n["name"], programs=programs, rows=athletes))
        )
    return edges


BARE: dict[str, Any] = {}


@strawberry.type
class BareQuery:
    @strawberry.field
    def coaches(self, first: int = 20) -> CoachConnT:
        if "objects" not in BARE:
            BARE["objects"] = bare_objects(BARE["data"])
        return CoachConnT(edges=BARE["objects"][:first])


def engine_of(app: Any) -> Any:
    """The compiled-execution engine of a coachgraph app (its counters: `stats()`)."""
    for route in app.routes:
        if getattr(route, "path", None) == "/graphql" and hasattr(route.endpoint, "app"):
            return route.endpoint.app.schema.engine
    raise LookupError("no /graphql route")


def serve(port: int) -> None:
    import uvicorn

    app = make_server_app(os.environ["BENCH_DSN"], os.environ["BENCH_SECRET"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --------------------------------------------------------------------------- load side
async def drive(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    concurrency: int,
    seconds: float,
    raw: bool = False,
    warm: float | None = None,
    cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        payload = json.dumps(body).encode()
        hdrs = {"content-type": "application/json", **headers}

        async def worker(deadline: float) -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                response = await client.post(url, content=payload, headers=hdrs)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:200]}")

        warm_until = time.perf_counter() + (min(2.0, seconds / 4) if warm is None else warm)
        await asyncio.gather(*[worker(warm_until) for _ in range(concurrency)])
        latencies.clear()
        cpu0 = cpu() if cpu else 0.0
        start = time.perf_counter()
        await asyncio.gather(*[worker(start + seconds) for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
        cpu_used = cpu() - cpu0 if cpu else 0.0
    if raw:
        return {"latencies": latencies, "elapsed": elapsed, "cpu": cpu_used}
    return summary(latencies, elapsed)


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "p50": ordered[len(ordered) // 2] * 1000,
        "p95": ordered[int(len(ordered) * 0.95)] * 1000,
        "rps": len(ordered) / elapsed,
    }


Endpoints = dict[str, tuple[str, dict[str, Any], dict[str, str]]]


async def interleaved_c1(endpoints: Endpoints, seconds: float) -> dict[str, dict[str, float]]:
    """c=1, one request to each endpoint in turn (each over its own keep-alive connection),
    for `seconds` per endpoint: the machine's drift (other processes on the shared cores)
    falls on every endpoint alike. req/s = requests / the time spent waiting for them."""
    clients = {name: httpx.AsyncClient(timeout=30) for name in endpoints}
    latencies: dict[str, list[float]] = {name: [] for name in endpoints}
    try:
        prepared = {
            name: (url, json.dumps(body).encode(), {"content-type": "application/json", **h})
            for name, (url, body, h) in endpoints.items()
        }

        async def once(name: str) -> float:
            url, payload, headers = prepared[name]
            t0 = time.perf_counter()
            response = await clients[name].post(url, content=payload, headers=headers)
            took = time.perf_counter() - t0
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
            return took

        warm = time.perf_counter() + min(2.0, seconds / 4)
        while time.perf_counter() < warm:
            for name in endpoints:
                await once(name)
        deadline = time.perf_counter() + seconds * len(endpoints)
        while time.perf_counter() < deadline:
            for name in endpoints:
                latencies[name].append(await once(name))
    finally:
        for client in clients.values():
            await client.aclose()
    return {name: summary(values, sum(values)) for name, values in latencies.items()}


async def interleaved_c8(
    endpoints: Endpoints, seconds: float, server_pid: int, slice_seconds: float = 2.0
) -> dict[str, dict[str, float]]:
    """c=8, in slices of `slice_seconds` per endpoint in turn (each after a short warm-up on
    fresh connections), `seconds` per endpoint in all; with the server's CPU time (user +
    system) per request."""
    rounds = max(1, round(seconds / slice_seconds))
    latencies: dict[str, list[float]] = {name: [] for name in endpoints}
    elapsed = dict.fromkeys(endpoints, 0.0)
    cpu = dict.fromkeys(endpoints, 0.0)
    for _ in range(rounds):
        for name, (url, body, headers) in endpoints.items():
            r = await drive(
                url,
                body,
                headers,
                concurrency=8,
                seconds=seconds / rounds,
                raw=True,
                warm=0.5,
                cpu=lambda: cpu_seconds(server_pid),
            )
            latencies[name].extend(r["latencies"])
            elapsed[name] += r["elapsed"]
            cpu[name] += r["cpu"]
    results = {name: summary(latencies[name], elapsed[name]) for name in endpoints}
    for name, r in results.items():
        r["cpu_ms"] = cpu[name] * 1000 / r["n"]
    return results


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_fields(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 + count_fields(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_fields(v) for v in value)
    return 0


async def measure(base: str, token: str, seconds: float, server_pid: int) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    gql = {"query": QUERY}
    endpoints = {
        "ours": (f"{base}/ours/graphql", gql, auth),
        "old": (f"{base}/old/graphql", gql, auth),
        "raw": (f"{base}/raw", {}, {}),
        "bare": (f"{base}/bare/graphql", gql, {}),
    }
    async with httpx.AsyncClient(timeout=60) as client:
        answers, bodies = {}, {}
        for name, (url, body, headers) in endpoints.items():
            r = await client.post(url, json=body, headers=headers)
            bodies[name] = r.content
            answers[name] = r.json()
        if answers["ours"] != answers["old"]:
            raise AssertionError(
                f"compiled and graphql-core disagree:\n{bodies['ours'][:500]!r}\n"
                f"{bodies['old'][:500]!r}"
            )
        assert answers["ours"] == answers["raw"] == answers["bare"], "endpoints disagree"
        fields = count_fields(answers["ours"]["data"])
        before = (await client.get(f"{base}/stats")).json()["statements"]
        await client.post(endpoints["ours"][0], json=gql, headers=auth)
        statements = (await client.get(f"{base}/stats")).json()["statements"] - before

    results: dict[str, Any] = {
        "fields": fields,
        "statements_per_request": statements,
        "bytes": {name: len(b) for name, b in bodies.items()},
        "identical_bytes": bodies["ours"] == bodies["old"],
    }
    # the endpoints interleaved (see interleaved_c1 / _c8): ratios taken in the same minutes
    async with httpx.AsyncClient() as client:
        await client.get(f"{base}/stats?reset=1")
    c1 = await interleaved_c1(endpoints, seconds)
    results.update({f"{name}@1": value for name, value in c1.items()})
    # the database time of (2), unloaded (c=1): the budget the issue-2 target adds to (3)
    async with httpx.AsyncClient() as client:
        raw_db = (await client.get(f"{base}/stats")).json()["raw_db_ms"]
    results["raw_db_ms_p50"] = statistics.median(raw_db)
    c8 = await interleaved_c8(endpoints, seconds, server_pid)
    results.update({f"{name}@8": value for name, value in c8.items()})
    results["typename"] = await drive(
        f"{base}/ours/graphql", {"query": TYPENAME}, {}, concurrency=8, seconds=seconds
    )
    results["plain"] = await drive(f"{base}/plain", {}, {}, concurrency=8, seconds=seconds)
    async with httpx.AsyncClient() as client:
        results["engine"] = (await client.get(f"{base}/stats")).json()["engine"]
    return results


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\n{time.strftime('%Y-%m-%d')}  python -m benchmarks.nested_query "
        f"--coaches {args.coaches} --athletes {args.athletes} --seconds {args.seconds}"
    )
    print(
        f"response: {r['fields']} fields; our SQL statements per request: "
        f"{r['statements_per_request']}; raw endpoint DB time p50: {r['raw_db_ms_p50']:.2f} ms"
    )
    print(
        f"bodies: {r['bytes']}; compiled and graphql-core bodies "
        f"{'byte-identical' if r['identical_bytes'] else 'equal as parsed JSON, NOT byte-identical'}"
    )
    print(f"engine counters: {r['engine']}\n")
    print(
        "| endpoint | c=1 p50 ms | c=1 p95 ms | c=1 req/s | c=8 p50 ms | c=8 p95 ms | c=8 req/s "
        "| server CPU ms/request (c=8) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, label in (
        ("ours", "(1) coachgraph GraphQL, compiled"),
        ("old", "(1') coachgraph GraphQL, graphql-core (compiled_execution=False)"),
        ("raw", "(2) Starlette + asyncpg, json.dumps"),
        ("bare", "(3) bare Strawberry, in memory"),
    ):
        a, b = r[f"{name}@1"], r[f"{name}@8"]
        print(
            f"| {label} | {a['p50']:.2f} | {a['p95']:.2f} | {a['rps']:.0f} | "
            f"{b['p50']:.2f} | {b['p95']:.2f} | {b['rps']:.0f} | {b['cpu_ms']:.1f} |"
        )
    ours, old, raw, bare = r["ours@1"], r["old@1"], r["raw@1"], r["bare@1"]
    budget = bare["p50"] + r["raw_db_ms_p50"]
    p50_ratio = ours["p50"] / raw["p50"]
    rps_ratio = r["ours@8"]["rps"] / r["raw@8"]["rps"]

    def verdict(ok: bool, goal: bool) -> str:
        return ("met, goal met" if goal else "met, goal missed") if ok else "MISSED"

    print(
        f"\ncompiled / raw, p50 at c=1: {p50_ratio:.2f}x (target <= 1.5, goal 1.2: "
        f"{verdict(p50_ratio <= 1.5, p50_ratio <= 1.2)})"
    )
    print(
        f"compiled / raw, req/s at c=8: {rps_ratio:.2f} (target >= 0.6, goal 0.8: "
        f"{verdict(rps_ratio >= 0.6, rps_ratio >= 0.8)})"
    )
    print(
        f"server CPU per request (c=8): compiled {r['ours@8']['cpu_ms']:.1f} ms, graphql-core "
        f"{r['old@8']['cpu_ms']:.1f}, raw {r['raw@8']['cpu_ms']:.1f}: compiled / raw "
        f"{r['ours@8']['cpu_ms'] / r['raw@8']['cpu_ms']:.2f}x"
    )
    print(
        f"compiled vs graphql-core: p50 at c=1 {old['p50'] / ours['p50']:.2f}x faster, "
        f"req/s at c=8 {r['ours@8']['rps'] / r['old@8']['rps']:.2f}x; "
        f"graphql-core / raw p50 {old['p50'] / raw['p50']:.2f}x, "
        f"req/s {r['old@8']['rps'] / r['raw@8']['rps']:.2f}"
    )
    print(
        f"\nours / raw (p50, c=1): {ours['p50'] / raw['p50']:.2f}x; "
        f"ours / bare: {ours['p50'] / bare['p50']:.2f}x"
    )
    print(
        f"target: ours p50 <= 1.3 x (bare p50 + raw DB time) = 1.3 x {budget:.2f} ms "
        f"= {1.3 * budget:.2f} ms; measured {ours['p50']:.2f} ms "
        f"({ours['p50'] / budget:.2f}x) -> {'met' if ours['p50'] <= 1.3 * budget else 'MISSED'}"
    )
    print(
        f"throughput c=8: ours / raw {r['ours@8']['rps'] / r['raw@8']['rps']:.2f}, "
        f"ours / bare {r['ours@8']['rps'] / r['bare@8']['rps']:.2f}"
    )
    print(
        f"{{ __typename }}: {r['typename']['rps']:.0f} req/s (p50 {r['typename']['p50']:.2f} ms) "
        f"vs plain Starlette JSON {r['plain']['rps']:.0f} req/s (p50 {r['plain']['p50']:.2f} ms): "
        f"{r['typename']['rps'] / r['plain']['rps']:.2f}x"
    )


async def prepare(data_dir: Path, coaches: int, athletes: int) -> tuple[str, Any]:
    from coachgraph.services import seed_database
    from coachgraph.stores.db import Database, EmbeddedPostgres
    from coachgraph.stores.migrate import migrate

    server = EmbeddedPostgres(data_dir / "pg")
    dsn = await server.start()
    db = await Database.connect(dsn, min_size=1, max_size=2)
    async with db.pool.acquire() as conn:
        await migrate(conn)
    if not await db.pool.fetchval("SELECT count(*) FROM coaches"):
        await seed_database(db, coaches=coaches, athletes=athletes, seed_value=11)
    await db.close()
    return dsn, server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--coaches", type=int, default=500)
    parser.add_argument("--athletes", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "coachgraph-bench"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    from coachgraph.api.auth import issue_token
    from coachgraph.resolvers.policy import Role

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o755)
    dsn, server = asyncio.run(prepare(data_dir, args.coaches, args.athletes))
    secret = "benchmark-secret-0123456789-abcdefghij"
    env = {**os.environ, "BENCH_DSN": dsn, "BENCH_SECRET": secret}
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.nested_query", "--serve", str(args.port)], env=env
    )
    try:
        base = f"http://127.0.0.1:{args.port}"
        for _ in range(100):
            try:
                httpx.post(f"{base}/plain", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        token = issue_token(secret, role=Role.ADMIN, subject=None, ttl_seconds=3600)
        report(asyncio.run(measure(base, token, args.seconds, proc.pid)), args)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        asyncio.run(server.stop())


if __name__ == "__main__":
    main()
