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
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
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
        # the clients in --client-processes processes, so that the load generator's own event
        # loop is not what is measured; each starts measuring after the warm-up
        loop = asyncio.get_running_loop()
        shares = [
            [
                (i, sessions[i % len(sessions)])
                for i in range(k, args.clients, args.client_processes)
            ]
            for k in range(args.client_processes)
        ]
        with ProcessPoolExecutor(args.client_processes, mp_context=get_context("spawn")) as pool:
            runs = [
                loop.run_in_executor(pool, run_clients, port, share, args.warmup, args.seconds)
                for share in shares
            ]
            await asyncio.sleep(args.warmup + 1.0)  # the processes start, then warm up
            before = cpu_split(server.pid, pool)
            results = await asyncio.gather(*runs)
            after = cpu_split(server.pid, pool)
        tally = Tally()
        for latency, codes in results:
            for op, values in latency.items():
                tally.latency[op].extend(values)
            for op, code, n in codes:
                tally.codes[(op, code)] += n
        took = after.pop("elapsed") - before.pop("elapsed")
        tally.cpu = {k: (after[k] - before[k]) / took for k in after}  # type: ignore[attr-defined]
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


def run_clients(
    port: int, share: list[tuple[int, Any]], warmup: float, seconds: float
) -> tuple[dict[str, list[float]], list[tuple[str, str, int]]]:
    """One load-generating process: its share of the clients (index, session)."""

    async def run() -> Tally:
        tally = Tally()
        limits = httpx.Limits(max_connections=len(share), max_keepalive_connections=len(share))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
        ) as http:
            deadline = time.perf_counter() + warmup + seconds
            clients = [
                asyncio.create_task(client_loop(http, tally, deadline, session, random.Random(i)))
                for i, session in share
            ]
            await asyncio.sleep(warmup)
            tally.measuring = True
            await asyncio.gather(*clients)
        return tally

    tally = asyncio.run(run())
    return dict(tally.latency), [(op, code, n) for (op, code), n in tally.codes.items()]


def cpu_split(pid: int, pool: Any) -> dict[str, float]:
    """CPU seconds so far: the server's processes, PostgreSQL's, the load generators', and
    the whole machine's (busy), to tell what else ran on the cores meanwhile."""
    import psutil

    def used(p: psutil.Process) -> float:
        try:
            t = p.cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    server = psutil.Process(pid)
    postgres = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    machine = psutil.cpu_times()
    return {
        "server": used(server) + sum(used(c) for c in server.children(recursive=True)),
        "postgres (every cluster)": sum(used(p) for p in postgres),
        "load generators": sum(used(psutil.Process(p)) for p in pool._processes),
        "elapsed": time.perf_counter(),
        "machine busy": machine.user
        + machine.system
        + machine.nice
        + getattr(machine, "irq", 0)
        + getattr(machine, "softirq", 0),
    }


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
        cpu = getattr(tally, "cpu", {})
        print(
            f"{workers} worker(s): cores busy over the window: "
            + ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())
        )
    for workers, tally in tallies.items():
        rss = getattr(tally, "rss", [])
        print(f"{workers} worker(s): RSS after the load {', '.join(f'{mb:.0f} MB' for mb in rss)}")
    codes: dict[str, int] = {}
    for tally in tallies.values():
        for (_, code), n in tally.codes.items():
            codes[code] = codes.get(code, 0) + n
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
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--fanout", type=int, default=1000, help="sessions; 0: no fan-out")
    parser.add_argument("--fanout-seconds", type=float, default=10)
    parser.add_argument("--port", type=int, default=28830)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
