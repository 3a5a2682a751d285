"""Sample ingestion: recordMetrics and NDJSON over HTTP beside raw asyncpg COPY, same run.

The app runs in its own uvicorn process against an embedded PostgreSQL; request bodies are
built before timing, so the client costs only the sending (each NDJSON body is made distinct by
its leading blank lines, which the route skips: the same body again would be a retry, answered
from the record of the first and not stored). The raw baseline is a loop of
`copy_records_to_table` on one connection into the same table, in batches of the same size.

    python benchmarks/ingest.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from coachgraph.api.auth import issue_token
from coachgraph.ids import to_global_id
from coachgraph.resolvers.policy import Role
from coachgraph.stores import coaches, sessions
from coachgraph.stores.athletes import create as create_athlete
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate

SECRET = "benchmark-secret-for-coachgraph-ingest-0123456789"
RECORD = """mutation($id: ID!, $samples: [MetricSampleInput!]!) { recordMetrics(sessionId: $id, samples: $samples) {
  ... on RecordMetrics { accepted } ... on UserError { message } } }"""


def serve(port: int, dsn: str, data_dir: str) -> None:
    import uvicorn

    from coachgraph.app import create_app
    from coachgraph.config import Settings

    settings = Settings(data_dir=Path(data_dir), jwt_secret=SECRET, database_url=dsn)
    app = create_app(settings, start_projector=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def rows(n: int, start: datetime) -> list[dict[str, object]]:
    kinds = ("HEART_RATE", "POWER", "CADENCE")
    return [
        {
            "kind": kinds[i % 3],
            "at": (start + timedelta(microseconds=i)).isoformat(),
            "value": 90 + i % 60,
        }
        for i in range(n)
    ]


async def live_session(db: Database) -> int:
    async with db.transaction() as conn:
        coach = await coaches.create(conn, name="B", sports=["running"], timezone="UTC", capacity=5)
        athlete = await create_athlete(conn, name="A", sport="running", timezone="UTC", level=2)
        await coaches.assign(conn, coach_id=coach.id, athlete_id=athlete.id)
        s = await sessions.schedule(
            conn,
            coach_id=coach.id,
            athlete_id=athlete.id,
            program_id=None,
            scheduled_at=datetime.now(UTC),
            notes=None,
        )
        await sessions.transition(conn, session_id=s.id, to="LIVE")
    return s.id


async def timed(seconds: float, step: object) -> float:
    """Samples per second of repeated `step()` calls (each returns how many it stored)."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += await step()  # type: ignore[operator]
    return done / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--port", type=int, default=28762)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coachgraph-bench-ingest-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        pg = EmbeddedPostgres(root / "pg", delete_on_stop=True)
        dsn = await pg.start()
        db = await Database.connect(dsn, min_size=1, max_size=2)
        proc = None
        try:
            async with db.pool.acquire() as conn:
                await migrate(conn)
            session_id = await live_session(db)
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(args.port), dsn, str(root / "data")]
            )
            base = f"http://127.0.0.1:{args.port}"
            async with httpx.AsyncClient(timeout=120) as http:
                for _ in range(200):
                    try:
                        await http.get(f"{base}/healthz")
                        break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.1)
                token = issue_token(SECRET, role=Role.ADMIN, subject=None, ttl_seconds=3600)
                auth = {"Authorization": f"Bearer {token}"}
                sid = to_global_id("TrainingSession", session_id)
                results: dict[str, float] = {}
                seq = [10**12]  # raw batches take cursors far above the app's
                sent = [0]  # NDJSON bodies sent: each is made distinct by its leading blank lines
                for _ in range(2):  # two rounds, interleaved: the machine's noise hits all alike
                    start = datetime.now(UTC)
                    graphql_body = json.dumps(
                        {"query": RECORD, "variables": {"id": sid, "samples": rows(1000, start)}}
                    ).encode()
                    ndjson_body = b"\n".join(json.dumps(r).encode() for r in rows(50_000, start))
                    records_1k = [
                        (
                            session_id,
                            0,
                            r["kind"],
                            datetime.fromisoformat(str(r["at"])),
                            float(r["value"]),
                        )
                        for r in rows(1000, start)
                    ]  # type: ignore[arg-type]
                    records_50k = [
                        (
                            session_id,
                            0,
                            r["kind"],
                            datetime.fromisoformat(str(r["at"])),
                            float(r["value"]),
                        )
                        for r in rows(50_000, start)
                    ]  # type: ignore[arg-type]

                    async def graphql(graphql_body: bytes = graphql_body) -> int:
                        r = await http.post(
                            f"{base}/graphql",
                            content=graphql_body,
                            headers=auth | {"Content-Type": "application/json"},
                        )
                        assert r.json()["data"]["recordMetrics"]["accepted"] == 1000, r.text
                        return 1000

                    async def ndjson(ndjson_body: bytes = ndjson_body) -> int:
                        # the same bytes twice would be a retry, answered without storing
                        sent[0] += 1
                        r = await http.post(
                            f"{base}/ingest/sessions/{sid}/samples",
                            content=b"\n" * sent[0] + ndjson_body,
                            headers=auth,
                        )
                        assert r.status_code == 200 and not r.json()["replayed"], r.text
                        return 50_000

                    def raw(batch: list[tuple[object, ...]]) -> object:
                        async def step() -> int:
                            first = seq[0]
                            seq[0] += len(batch)
                            async with db.pool.acquire() as conn, conn.transaction():
                                await conn.copy_records_to_table(
                                    "metric_samples",
                                    records=[
                                        (r[0], first + i, *r[2:]) for i, r in enumerate(batch)
                                    ],
                                    columns=("session_id", "seq", "kind", "at", "value"),
                                )
                            return len(batch)

                        return step  # noqa: B023 (used at once, inside the round)

                    for name, step in (
                        ("raw COPY, 1,000 a batch", raw(records_1k)),
                        ("recordMetrics, 1,000 a request", graphql),
                        ("raw COPY, 50,000 a batch", raw(records_50k)),
                        ("NDJSON, 50,000 lines a request", ndjson),
                    ):
                        rate = await timed(args.seconds / 2, step)
                        results[name] = results.get(name, 0) + rate / 2
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
            await db.close()
            await pg.stop()
    print("| path | samples/s | ratio |")
    print("|---|---|---|")
    raw1, raw50 = results["raw COPY, 1,000 a batch"], results["raw COPY, 50,000 a batch"]
    print(f"| raw COPY, 1,000 a batch | {raw1:,.0f} | 1.00 |")
    print(
        f"| recordMetrics (GraphQL over HTTP), 1,000 a request | {results['recordMetrics, 1,000 a request']:,.0f} | {results['recordMetrics, 1,000 a request'] / raw1:.2f} of raw 1,000 |"
    )
    print(f"| raw COPY, 50,000 a batch | {raw50:,.0f} | 1.00 |")
    print(
        f"| NDJSON route, 50,000 lines a request | {results['NDJSON, 50,000 lines a request']:,.0f} | {results['NDJSON, 50,000 lines a request'] / raw50:.2f} of raw 50,000 |"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        asyncio.run(main())
