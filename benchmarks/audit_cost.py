"""Audit's cost on a coach's dashboard that reads audited fields: audit on vs off, same run.

    python -m benchmarks.audit_cost [--coaches 50 --athletes 1000] [--seconds 10]

The dashboard of benchmarks/nested_query.py reads no audited field, so this one is a coach's
own dashboard over its athletes (as the coach, whose reads of another person's data are
audited; API.md "Added 2026-11-30"), in two sizes:
  light  each athlete's last session (`sessions`: read:profile) -- little database work, the
         worst case for audit's share: 10 events a request
  full   the same, with the session's `summary` and heart-rate `series` (300 s buckets) over
         its 10,800 samples (read:profile, read:summary, read:series): 30 events a request

One server process (uvicorn, one event loop) serves the same app object twice:
  /on/graphql   as deployed: the request's events hashed and written in one INSERT at its end
  /off/graphql  audit off, in this benchmark only (there is no setting for it): an ASGI
                wrapper puts an audit batch that drops what it is given into the request's
                scope, where the view looks for the request's batch first
A second process drives them interleaved (c=1: one request to each endpoint in turn; c=8:
two-second slices in turn), so the shared machine's drift falls on all alike, and reports the
ratios on / off. The answers are checked equal, and the audit table is checked to grow by the
events of an /on request and not at all for an /off one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from benchmarks.nested_query import interleaved_c1, interleaved_c8

SECRET = "benchmark-secret-0123456789-abcdefghij"
ATHLETES = 10  # on the dashboard
SESSION_SECONDS = 3600  # each athlete's last session: heart rate, power, cadence at 1 Hz

LIGHT = """query($id: ID!) { node(id: $id) { ... on Coach { id name
  athletes(first: 10) { edges { node { id name
    sessions(first: 1) { edges { node { id status scheduledAt } } } } } } } } }"""
FULL = """query($id: ID!) { node(id: $id) { ... on Coach { id name
  athletes(first: 10) { edges { node { id name
    sessions(first: 1) { edges { node { id status scheduledAt
      summary { sampleCount avgHeartRate maxHeartRate durationSeconds }
      series(kind: HEART_RATE, bucketSeconds: 300) { start count min max avg } } } } } } } } } }"""
EVENTS = {"light": ATHLETES, "full": 3 * ATHLETES}


# --------------------------------------------------------------------------- server side
def make_server_app(dsn: str) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.types import Receive, Scope, Send

    from coachgraph.api.view import AUDIT_KEY
    from coachgraph.app import create_app
    from coachgraph.config import Limits, Settings
    from coachgraph.lifecycle.audit import AuditBatch
    from coachgraph.stores.db import Database

    class DroppedAudit(AuditBatch):
        """Audit off: what the resolvers record is dropped, nothing is hashed or written."""

        def record(
            self, *, actor: str, action: str, athlete_id: int, db: Database | None = None
        ) -> None:
            return None

        async def flush(self, db: Database) -> None:
            return None

    class NoAudit:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                scope[AUDIT_KEY] = DroppedAudit("")
            await self.app(scope, receive, send)

    settings = Settings(
        data_dir=Path(tempfile.gettempdir()),
        jwt_secret=SECRET,
        database_url=dsn,
        graphiql=False,
        limits=Limits(rate_limit_per_minute=10**9, rate_limit_burst=10**9),
    )
    # no background jobs (retention, projector): the database holds still between rounds
    app = create_app(settings, start_projector=False)

    @asynccontextmanager
    async def lifespan(outer: Any) -> AsyncIterator[dict[str, Any]]:
        async with app.router.lifespan_context(app) as state:
            yield dict(state or {})

    return Starlette(
        routes=[Mount("/on", app), Mount("/off", NoAudit(app))],
        lifespan=lifespan,
    )


def serve(port: int) -> None:
    import uvicorn

    app = make_server_app(os.environ["BENCH_DSN"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --------------------------------------------------------------------------- data
async def prepare(data_dir: Path, coaches: int, athletes: int) -> tuple[str, Any, int]:
    """A seeded database, plus the dashboard's coach: ATHLETES athletes, each with one session
    completed yesterday holding SESSION_SECONDS of samples. Returns (dsn, server, coach id)."""
    from coachgraph.services import seed_database
    from coachgraph.stores import retention
    from coachgraph.stores.db import Database, EmbeddedPostgres
    from coachgraph.stores.migrate import migrate

    server = EmbeddedPostgres(data_dir / "pg", delete_on_stop=True)
    dsn = await server.start()
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn)
        now = datetime.now(UTC)
        await retention.ensure_partitions(db, now=now, policy=retention.Policy())
        await seed_database(db, coaches=coaches, athletes=athletes, seed_value=11)
        coach: int = await db.pool.fetchval(
            "INSERT INTO coaches (name, sports, timezone, capacity) "
            "VALUES ('Dashboard coach', '{run}', 'UTC', 50) RETURNING id"
        )
        ids = [
            r[0]
            for r in await db.pool.fetch(
                "INSERT INTO athletes (name, sport, timezone, level) SELECT 'Runner ' || i, "
                "'run', 'UTC', 3 FROM generate_series(1, $1) i RETURNING id",
                ATHLETES,
            )
        ]
        await db.pool.execute(
            "INSERT INTO coach_athletes (coach_id, athlete_id) SELECT $1, unnest($2::bigint[])",
            coach,
            ids,
        )
        await db.pool.execute(
            "UPDATE coaches SET active_athlete_count = $2 WHERE id = $1", coach, len(ids)
        )
        start = (now - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
        kinds = ("HEART_RATE", "POWER", "CADENCE")
        for i, athlete in enumerate(ids):
            sid = await db.pool.fetchval(
                "INSERT INTO training_sessions (coach_id, athlete_id, status, scheduled_at, "
                "started_at, ended_at, sample_seq) VALUES ($1, $2, 'COMPLETED', $3, $3, $4, $5) "
                "RETURNING id",
                coach,
                athlete,
                start + timedelta(hours=i),
                start + timedelta(hours=i, seconds=SESSION_SECONDS),
                SESSION_SECONDS * len(kinds),
            )
            t0 = start + timedelta(hours=i)
            records = [
                (sid, n + 1, kinds[n % 3], t0 + timedelta(seconds=n // 3), 100.0 + n % 70)
                for n in range(SESSION_SECONDS * len(kinds))
            ]
            await db.pool.copy_records_to_table(
                "metric_samples",
                records=records,
                columns=("session_id", "seq", "kind", "at", "value"),
            )
        await db.pool.execute("VACUUM ANALYZE")
    finally:
        await db.close()
    return dsn, server, coach


# --------------------------------------------------------------------------- load side
async def audit_rows(dsn: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        found: int = await conn.fetchval("SELECT count(*) FROM audit_events")
        return found
    finally:
        await conn.close()


async def measure(base: str, dsn: str, coach: int, seconds: float, pid: int) -> dict[str, Any]:
    from coachgraph.api.auth import issue_token
    from coachgraph.ids import to_global_id
    from coachgraph.resolvers.policy import Role

    gid = to_global_id("Coach", coach)
    token = issue_token(SECRET, role=Role.COACH, subject=gid, ttl_seconds=7200)
    auth = {"Authorization": f"Bearer {token}"}
    endpoints = {
        f"{size} {mode}": (
            f"{base}/{mode}/graphql",
            {"query": query, "variables": {"id": gid}},
            auth,
        )
        for size, query in (("light", LIGHT), ("full", FULL))
        for mode in ("on", "off")
    }
    async with httpx.AsyncClient(timeout=60) as client:
        for size in ("light", "full"):
            answers = {}
            for mode in ("on", "off"):
                url, body, headers = endpoints[f"{size} {mode}"]
                before = await audit_rows(dsn)
                response = await client.post(url, json=body, headers=headers)
                answers[mode] = response.json()
                assert "errors" not in answers[mode], answers[mode]
                written = await audit_rows(dsn) - before
                expected = EVENTS[size] if mode == "on" else 0
                assert written == expected, f"{size} {mode}: {written} audit rows, not {expected}"
            assert answers["on"] == answers["off"], f"{size}: audit on and off answer differently"
            athletes = answers["on"]["data"]["node"]["athletes"]["edges"]
            assert len(athletes) == ATHLETES
            if size == "full":
                session = athletes[0]["node"]["sessions"]["edges"][0]["node"]
                assert session["summary"]["sampleCount"] == SESSION_SECONDS * 3
    results: dict[str, Any] = {}
    c1 = await interleaved_c1(endpoints, seconds)
    results.update({f"{name}@1": v for name, v in c1.items()})
    c8 = await interleaved_c8(endpoints, seconds, pid)
    results.update({f"{name}@8": v for name, v in c8.items()})
    results["rows"] = await audit_rows(dsn)
    return results


def report(r: dict[str, Any], args: argparse.Namespace, started: datetime) -> None:
    print(
        f"\n{started:%Y-%m-%d %H:%M} UTC  python -m benchmarks.audit_cost --coaches {args.coaches}"
        f" --athletes {args.athletes} --seconds {args.seconds}"
    )
    print(
        "| dashboard | audit | c=1 p50 ms | c=1 p95 ms | c=1 req/s | c=8 p50 ms | c=8 req/s "
        "| server CPU ms/request (c=8) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in ("light", "full"):
        for mode in ("on", "off"):
            a, b = r[f"{size} {mode}@1"], r[f"{size} {mode}@8"]
            print(
                f"| {size} | {mode} | {a['p50']:.2f} | {a['p95']:.2f} | {a['rps']:.0f} | "
                f"{b['p50']:.2f} | {b['rps']:.0f} | {b['cpu_ms']:.2f} |"
            )
    for size in ("light", "full"):
        on1, off1 = r[f"{size} on@1"], r[f"{size} off@1"]
        on8, off8 = r[f"{size} on@8"], r[f"{size} off@8"]
        p50 = on1["p50"] / off1["p50"] - 1
        p95 = on1["p95"] / off1["p95"] - 1
        rps = 1 - on8["rps"] / off8["rps"]
        cpu = on8["cpu_ms"] / off8["cpu_ms"] - 1
        verdict = "met" if max(p50, rps) <= 0.05 else "MISSED"
        print(
            f"{size}: audit on vs off: c=1 p50 {p50:+.1%}, p95 {p95:+.1%}; c=8 req/s "
            f"{-rps:+.1%}, server CPU per request {cpu:+.1%} (target <= 5 %: {verdict})"
        )
    print(f"audit rows written in all: {r['rows']:,}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--coaches", type=int, default=50)
    parser.add_argument("--athletes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8733)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    started = datetime.now(UTC)
    root = Path(tempfile.mkdtemp(prefix="coachgraph-bench-audit-"))
    root.chmod(0o755)
    dsn, server, coach = asyncio.run(prepare(root, args.coaches, args.athletes))
    env = {**os.environ, "BENCH_DSN": dsn}
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.audit_cost", "--serve", str(args.port)], env=env
    )
    try:
        base = f"http://127.0.0.1:{args.port}"
        for _ in range(150):
            try:
                httpx.get(f"{base}/on/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        report(asyncio.run(measure(base, dsn, coach, args.seconds, proc.pid)), args, started)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        asyncio.run(server.stop())
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
