"""Soak: 200 concurrent clients for 60 s of mixed traffic, plus 200 live subscribers.

The server is the real app under uvicorn in its own process (embedded PostgreSQL, networkx
graph, Postgres search, in-process broker; the projector running). A second process drives
it: each HTTP client loops over a mix of the operations users send (a coach's dashboard,
search, matchCoaches for an athlete, a profile mutation, recordMetrics into a LIVE session),
and 200 WebSocket clients hold a sessionMetrics subscription each. Reported: operations and
errors by code (HTTP 5xx, GraphQL `extensions.code`, typed mutation results), p50/p99 per
operation, samples delivered to subscribers, and the server's resident memory after warm-up
and at the end.

    python -m benchmarks.soak [--clients 200] [--subscribers 200] [--seconds 60]

Targets (issue 11): 0 x 5xx, 0 INTERNAL, memory growth < 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import websockets

from benchmarks.common import percentile, seeded
from coachgraph.api.auth import issue_token
from coachgraph.ids import to_global_id
from coachgraph.resolvers.policy import Role

SECRET = "benchmark-secret-for-coachgraph-soak-0123456789"

DASHBOARD = """query { viewer { coach { id name athletes(first: 10) { totalCount edges { node {
  id name level skills { level skill { id name } } goals { id name } } } } programs { id title } } } }"""
SEARCH = """query($q: String!) { search(query: $q, first: 10) { totalCount
  edges { score node { ... on Coach { id name } ... on Program { id title } ... on Skill { id name } } } } }"""
MATCH = """query($id: ID!) { matchCoaches(athleteId: $id, first: 5) {
  score coach { id name } reasons { summary goalsCovered { name } } } }"""
UPDATE = """mutation($id: ID!, $h: String!) { updateCoach(id: $id, input: {headline: $h}) {
  __typename ... on UserError { message } } }"""
RECORD = """mutation($id: ID!, $s: [MetricSampleInput!]!) { recordMetrics(sessionId: $id, samples: $s) {
  __typename ... on RecordMetrics { accepted } ... on UserError { message } } }"""
SUBSCRIBE = "subscription($id: ID!) { sessionMetrics(sessionId: $id) { cursor value } }"
WORDS = ["run", "swim", "lisbon", "strength", "marathon", "cycl", "sprint", "yoga", "coach"]


# --------------------------------------------------------------------------- server side
def serve(port: int, dsn: str, data_dir: str) -> None:
    import uvicorn

    from coachgraph.app import create_app
    from coachgraph.config import Settings

    settings = Settings(data_dir=Path(data_dir), jwt_secret=SECRET, database_url=dsn)
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws_per_message_deflate=False,
        # longer than any pause of a client, so an idle keep-alive connection is not closed
        # as the client reuses it (a race of HTTP/1.1, not of the server, that httpx reports
        # as a ReadError)
        timeout_keep_alive=30,
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# --------------------------------------------------------------------------- fixtures
async def live_sessions(db: Any, count: int) -> list[tuple[int, int, int]]:
    """`count` LIVE sessions of current coach-athlete pairs: (session, coach, athlete)."""
    async with db.pool.acquire() as conn:
        await conn.execute("DELETE FROM training_sessions WHERE notes = 'soak'")
        rows = await conn.fetch(
            "INSERT INTO training_sessions (coach_id, athlete_id, status, scheduled_at, started_at, notes) "
            "SELECT coach_id, athlete_id, 'LIVE', now(), now(), 'soak' FROM "
            "(SELECT DISTINCT ON (coach_id) coach_id, athlete_id FROM coach_athletes "
            " ORDER BY coach_id, athlete_id LIMIT $1) pairs RETURNING id, coach_id, athlete_id",
            count,
        )
    return [(r["id"], r["coach_id"], r["athlete_id"]) for r in rows]


def token(role: Role, kind: str | None = None, raw_id: int | None = None) -> str:
    subject = to_global_id(kind, raw_id) if kind and raw_id else None
    return issue_token(SECRET, role=role, subject=subject, ttl_seconds=3600)


# --------------------------------------------------------------------------- load side
class Tally:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.codes: Counter[tuple[str, str]] = Counter()
        self.measuring = False
        self.delivered = 0
        self.recorded = 0  # samples accepted, warm-up included (every one should be delivered)
        self.sub_errors: Counter[str] = Counter()

    def record(self, op: str, ms: float, codes: list[str]) -> None:
        if not self.measuring:
            return
        self.latency[op].append(ms)
        for code in codes:
            self.codes[(op, code)] += 1


def codes_of(response: httpx.Response) -> list[str]:
    """Every error code in an answer: HTTP 5xx, GraphQL extensions.code, typed results."""
    if response.status_code >= 500:
        return [f"HTTP {response.status_code}"]
    try:
        body = response.json()
    except ValueError:
        return [f"HTTP {response.status_code} not JSON"]
    codes = [e.get("extensions", {}).get("code", "NO CODE") for e in body.get("errors") or ()]
    for value in (body.get("data") or {}).values():
        typename = value.get("__typename") if isinstance(value, dict) else None
        if typename and typename.endswith("Error"):
            codes.append(typename)
    return codes


async def client_loop(
    http: httpx.AsyncClient,
    tally: Tally,
    deadline: float,
    session: tuple[int, int, int],
    rng: random.Random,
) -> None:
    sid, coach_id, athlete_id = session
    coach = {"Authorization": f"Bearer {token(Role.COACH, 'Coach', coach_id)}"}
    athlete = {"Authorization": f"Bearer {token(Role.ATHLETE, 'Athlete', athlete_id)}"}
    coach_gid, athlete_gid = to_global_id("Coach", coach_id), to_global_id("Athlete", athlete_id)
    session_gid = to_global_id("TrainingSession", sid)
    while time.perf_counter() < deadline:
        op = rng.choices(["dashboard", "search", "match", "update", "record"], [4, 3, 2, 1, 2])[0]
        if op == "dashboard":
            body, headers = {"query": DASHBOARD}, coach
        elif op == "search":
            body, headers = {"query": SEARCH, "variables": {"q": rng.choice(WORDS)}}, athlete
        elif op == "match":
            body, headers = {"query": MATCH, "variables": {"id": athlete_gid}}, athlete
        elif op == "update":
            variables = {"id": coach_gid, "h": f"soak {rng.random():.6f}"}
            body, headers = {"query": UPDATE, "variables": variables}, coach
        else:
            now = datetime.now(UTC).isoformat()
            samples = [{"kind": "HEART_RATE", "at": now, "value": 120 + i} for i in range(10)]
            variables = {"id": session_gid, "s": samples}
            body, headers = {"query": RECORD, "variables": variables}, coach
        started = time.perf_counter()
        try:
            response = await http.post("/graphql", json=body, headers=headers)
            codes = codes_of(response)
            if op == "record" and not codes:
                tally.recorded += response.json()["data"]["recordMetrics"]["accepted"]
        except httpx.HTTPError as err:
            codes = [f"transport {type(err).__name__}"]
        tally.record(op, (time.perf_counter() - started) * 1000, codes)
        await asyncio.sleep(rng.uniform(0.05, 0.25))  # people and apps pause between requests


async def subscriber(url: str, session: tuple[int, int, int], tally: Tally) -> None:
    sid, coach_id, _ = session
    bearer = f"Bearer {token(Role.COACH, 'Coach', coach_id)}"
    async with websockets.connect(
        url, subprotocols=["graphql-transport-ws"], compression=None, max_queue=None
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": bearer}}))
        await ws.recv()
        payload = {"query": SUBSCRIBE, "variables": {"id": to_global_id("TrainingSession", sid)}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "next" and not message["payload"].get("errors"):
                tally.delivered += 1
            else:
                tally.sub_errors[json.dumps(message)[:120]] += 1


async def drive(
    port: int, server_pid: int, sessions: list[tuple[int, int, int]], args: Any
) -> None:
    tally = Tally()
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    rss_boot = rss_mb(server_pid)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        subs = [
            asyncio.create_task(subscriber(f"ws://127.0.0.1:{port}/graphql", s, tally))
            for s in sessions[: args.subscribers]
        ]
        # every subscription open before the first sample, so each sample recorded is owed
        # to a subscriber (one without `after` starts at the samples committed after it opened)
        await asyncio.sleep(5)
        warmup_end = time.perf_counter() + 10
        deadline = warmup_end + args.seconds
        clients = [
            asyncio.create_task(
                client_loop(http, tally, deadline, sessions[i % len(sessions)], random.Random(i))
            )
            for i in range(args.clients)
        ]
        await asyncio.sleep(10)
        dead = [t for t in subs if t.done()]
        if dead:
            raise RuntimeError(f"{len(dead)} subscribers failed: {dead[0].exception()!r}")
        rss_start = rss_mb(server_pid)
        tally.measuring = True
        await asyncio.gather(*clients)
        tally.measuring = False
        rss_end = rss_mb(server_pid)
        for _ in range(100):  # the last samples are on their way
            if tally.delivered >= tally.recorded:
                break
            await asyncio.sleep(0.2)
        closed = sum(t.done() for t in subs)
        for t in subs:
            t.cancel()
    report(tally, (rss_boot, rss_start, rss_end), closed, args)


def report(tally: Tally, rss: tuple[float, float, float], closed: int, args: Any) -> None:
    rss_boot, rss_start, rss_end = rss
    print(f"\n{args.clients} clients, {args.subscribers} subscribers, {args.seconds:.0f} s")
    print("\n| operation | requests | p50 ms | p99 ms | errors by code |")
    print("|---|---|---|---|---|")
    for op, values in sorted(tally.latency.items()):
        errors = ", ".join(f"{code} x {n}" for (o, code), n in tally.codes.items() if o == op)
        print(
            f"| {op} | {len(values):,} | {percentile(values, 0.5):.1f} | "
            f"{percentile(values, 0.99):.1f} | {errors or 'none'} |"
        )
    total = sum(len(v) for v in tally.latency.values())
    five = sum(n for (_, code), n in tally.codes.items() if code.startswith("HTTP 5"))
    internal = sum(n for (_, code), n in tally.codes.items() if code == "INTERNAL")
    growth = (rss_end - rss_start) / rss_start
    print(
        f"\ntotal {total:,} requests ({total / args.seconds:,.0f}/s); 5xx: {five}; INTERNAL: {internal}; "
        f"samples recorded {tally.recorded:,}, delivered to subscribers {tally.delivered:,}; subscriptions ended early: {closed}; "
        f"subscriber errors: {dict(tally.sub_errors) or 'none'}"
    )
    print(
        f"server RSS idle {rss_boot:.0f} MB, after 10 s warm-up {rss_start:.0f} MB, at the end {rss_end:.0f} MB: {growth:+.1%}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--port", type=int, default=28791)
    args = parser.parse_args()
    pg, db, dsn = await seeded("soak", coaches=500, athletes=10_000, seed=11)
    server: subprocess.Popen[bytes] | None = None
    try:
        sessions = await live_sessions(db, max(args.subscribers, 1))
        await db.close()
        data_dir = pg.pgdata.parent / "data"
        server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.soak", "--serve", str(args.port), dsn, str(data_dir)]
        )
        await wait_healthy(args.port)
        await drive(args.port, server.pid, sessions, args)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        await pg.stop()


async def wait_healthy(port: int) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError("the server did not become healthy")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        asyncio.run(main())
