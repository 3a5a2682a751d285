"""`coachgraph serve --workers N`: the mixed load at 1 and at 2 workers, and live fan-out with
each broker, in one run.

    python -m benchmarks.workers [--clients 100] [--seconds 30] [--fanout 1000] [--fanout-seconds 10]

Mixed load: an embedded PostgreSQL seeded with 500 coaches / 10,000 athletes (made once under
the temp dir, then reused), served by `python -m coachgraph.cli serve --workers N` as a user
starts it (its defaults: access log on, rate limits on; with 2 workers the PostgreSQL broker and
rate limits counted in Postgres). `--clients` HTTP clients (benchmarks/soak.py's loop: a coach's
dashboard, search, matchCoaches, updateCoach, recordMetrics, weighted 4:3:2:1:2, a pause of
50-250 ms after each) run for `--seconds` after a 5 s warm-up. Reported per worker count:
requests/s and p50/p99 per operation, errors by code.

Fan-out: benchmarks/fanout.py, `--fanout` sessions with one sessionMetrics subscriber each,
one sample a second per session, with the in-process broker, Redis Streams and PostgreSQL
(with PostgreSQL the samples are stored first: its subscribers read them back).

The tables are markdown; the run prints the command and the date.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import percentile, seeded
from benchmarks.soak import SECRET, Tally, client_loop, live_sessions, wait_healthy

OPERATIONS = ("dashboard", "search", "match", "update", "record")


async def mixed(dsn: str, workers: int, sessions: list[Any], args: argparse.Namespace) -> Tally:
    """The mixed load against `serve --workers N`; the tally of the measured window."""
    port = args.port + workers
    data_dir = Path(tempfile.mkdtemp(prefix=f"coachgraph-bench-workers-{workers}-"))
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "COACHGRAPH_JWT_SECRET": SECRET,
        "COACHGRAPH_DATA_DIR": str(data_dir),
        "COACHGRAPH_WORKERS": str(workers),
    }
    env.pop("REDIS_URL", None)
    log = (data_dir / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "coachgraph.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        await wait_healthy(port)
        await asyncio.sleep(2)  # every worker up (healthz answered from one)
        tally = Tally()
        limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
        ) as http:
            deadline = time.perf_counter() + args.warmup + args.seconds
            clients = [
                asyncio.create_task(
                    client_loop(
                        http, tally, deadline, sessions[i % len(sessions)], random.Random(i)
                    )
                )
                for i in range(args.clients)
            ]
            await asyncio.sleep(args.warmup)
            tally.measuring = True
            await asyncio.gather(*clients)
            tally.measuring = False
        tally.rss = worker_rss(server.pid)  # type: ignore[attr-defined]
        return tally
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def worker_rss(pid: int) -> list[float]:
    """The resident memory (MB) of the serving processes: the workers of a supervisor, or
    the one process serving alone."""
    import psutil

    parent = psutil.Process(pid)
    workers = [
        child for child in parent.children() if "resource_tracker" not in " ".join(child.cmdline())
    ]
    return [p.memory_info().rss / 1e6 for p in workers or [parent]]


def mixed_table(tallies: dict[int, Tally], seconds: float) -> None:
    print("\n| workers | operation | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    for workers, tally in tallies.items():
        total = 0
        for op in OPERATIONS:
            values = tally.latency.get(op, [])
            total += len(values)
            errors = sum(n for (o, _), n in tally.codes.items() if o == op)
            if not values:
                continue
            print(
                f"| {workers} | {op} | {len(values) / seconds:.1f} | "
                f"{percentile(values, 0.5):.0f} | {percentile(values, 0.99):.0f} | {errors} |"
            )
        every = [v for values in tally.latency.values() for v in values]
        if every:
            print(
                f"| {workers} | **all** | **{total / seconds:.1f}** | "
                f"{percentile(every, 0.5):.0f} | {percentile(every, 0.99):.0f} | "
                f"{sum(tally.codes.values())} |"
            )
    if set(tallies) >= {1, 2}:
        one, two = tallies[1], tallies[2]
        ratios = []
        for op in OPERATIONS:
            a, b = len(one.latency.get(op, [])), len(two.latency.get(op, []))
            if a:
                ratios.append(f"{op} {b / a:.2f}x")
        print(f"\n2 workers over 1, requests/s: {', '.join(ratios)}")
    for workers, tally in tallies.items():
        rss = getattr(tally, "rss", [])
        print(f"{workers} worker(s): RSS after the load {', '.join(f'{mb:.0f} MB' for mb in rss)}")
    codes = {code: n for tally in tallies.values() for (_, code), n in tally.codes.items()}
    if codes:
        print(f"errors by code: {codes}")


def fanout(broker: str, args: argparse.Namespace) -> str:
    """One fan-out run; its table row (or why there is none)."""
    flag = {"memory": [], "redis": ["--redis"], "postgres": ["--postgres"]}[broker]
    command = [
        sys.executable,
        "-m",
        "benchmarks.fanout",
        "--subscribers",
        str(args.fanout),
        "--seconds",
        str(args.fanout_seconds),
        "--warmup",
        "3",
        "--port",
        str(args.port + 10),
        *flag,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    rows = [
        line
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| broker")
    ]
    if not rows:
        return f"| {broker} | failed: {done.stderr.strip().splitlines()[-1:]} |"
    return rows[-1]


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  python -m benchmarks.workers "
        f"--clients {args.clients} --seconds {args.seconds:g} --fanout {args.fanout} "
        f"--fanout-seconds {args.fanout_seconds:g}  ({os.cpu_count()} cores)"
    )
    pg, db, dsn = await seeded("workers", coaches=500, athletes=10_000, seed=11)
    try:
        sessions = await live_sessions(db, args.clients)
        await db.close()
        tallies: dict[int, Tally] = {}
        for workers in args.workers:
            tallies[workers] = await mixed(dsn, workers, sessions, args)
    finally:
        await pg.stop()
    print(f"\nMixed load: {args.clients} clients, {args.seconds:g} s measured per worker count")
    mixed_table(tallies, args.seconds)
    if args.fanout:
        print(
            f"\nFan-out: {args.fanout} sessions x 1 sessionMetrics subscriber, one sample a "
            f"second each, {args.fanout_seconds:g} s (one server process)"
        )
        print(
            "| broker | execution | sessions x watchers | delivered | p50 ms | p99 ms "
            "| server CPU (of one core) | subscribers per core at that load |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for broker in ("memory", "redis", "postgres"):
            print(fanout(broker, args), flush=True)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--fanout", type=int, default=1000, help="sessions; 0: no fan-out")
    parser.add_argument("--fanout-seconds", type=float, default=10)
    parser.add_argument("--port", type=int, default=28830)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
