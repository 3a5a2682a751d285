"""`coachgraph serve --workers N`: the mixed load at 1 and at 2 workers, and live fan-out with
each broker, in one run.

    python -m benchmarks.workers [--clients 100] [--seconds 30] [--rounds 1] [--fanout 1000]
        [--fanout-seconds 10] [--client raw|httpx] [--only OPERATION] [--statements]
        [--pin-generator CPU]

Mixed load: an embedded PostgreSQL seeded with 500 coaches / 10,000 athletes (made once under
the temp dir, then reused), served by `python -m coachgraph.cli serve --workers N` as a user
starts it (its defaults: access log on, rate limits on; with 2 workers the PostgreSQL broker and
rate limits counted in Postgres). `--clients` clients (soak.py's loop: a coach's dashboard,
search, matchCoaches, updateCoach, recordMetrics, weighted 4:3:2:1:2, a pause of 50-250 ms after
each; `--only` one of them) run for `--seconds` after a warm-up, at each worker count in turn,
`--rounds` times alternated. The clients are benchmarks/loadgen.py's prepared requests on raw
keep-alive connections (`--client raw`, the default, one process), or soak.py's httpx loop
(`--client httpx`, which costs more CPU per request than the server it measures).

Reported per worker count: requests/s and p50/p99 per operation, errors by code; the cores busy
over the window (the server's processes, the benchmark's PostgreSQL, the load generator, the
whole machine: what else ran), and from them the CPU milliseconds per request of each; Postgres'
transactions and per-table rows written and scans per request; with `--statements`, the
statements run per request (pg_stat_statements, loaded for the run).

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
import shutil
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

from benchmarks import loadgen
from benchmarks.common import percentile, seeded
from benchmarks.soak import SECRET, Tally, client_loop, live_sessions, wait_healthy

OPERATIONS = ("dashboard", "search", "match", "update", "record")


async def mixed(
    dsn: str, workers: int, sessions: list[Any], args: argparse.Namespace, postmaster: int
) -> Tally:
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
            if args.client == "raw":
                runs = [
                    loop.run_in_executor(
                        pool, loadgen.run_clients, port, share, args.warmup, args.seconds, args.only
                    )
                    for share in shares
                ]
            else:
                runs = [
                    loop.run_in_executor(pool, run_clients, port, share, args.warmup, args.seconds)
                    for share in shares
                ]
            await asyncio.sleep(0.5)
            if args.pin_generator is not None:  # the load generators on that core alone
                for p in pool._processes:
                    os.sched_setaffinity(p, {args.pin_generator})
            await asyncio.sleep(args.warmup + 0.5)  # the processes start, then warm up
            if args.statements:
                await pg_execute(dsn, "SELECT pg_stat_statements_reset()")
            stats_before = await pg_stats(dsn)
            before = cpu_split(server.pid, pool, postmaster)
            results = await asyncio.gather(*runs)
            after = cpu_split(server.pid, pool, postmaster)
            await asyncio.sleep(1.1)  # backends report their statistics at most once a second
            stats_after = await pg_stats(dsn)
            if args.statements:
                requests = sum(len(r[0].get(op, [])) for r in results for op in OPERATIONS)
                await top_statements(dsn, workers, requests)
        tally = Tally()
        for latency, codes in results:
            for op, values in latency.items():
                tally.latency[op].extend(values)
            for op, code, n in codes:
                tally.codes[(op, code)] += n
        took = after.pop("elapsed") - before.pop("elapsed")
        tally.cpu = {k: (after[k] - before[k]) / took for k in after}  # type: ignore[attr-defined]
        tally.rss = worker_rss(server.pid)  # type: ignore[attr-defined]
        tally.pg = {  # type: ignore[attr-defined]
            k: stats_after.get(k, 0) - v for k, v in stats_before.items()
        }
        return tally
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        if server.returncode == 0:
            shutil.rmtree(data_dir, ignore_errors=True)  # kept, with its log, after a failure


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


def cpu_split(pid: int, pool: Any, postmaster: int) -> dict[str, float]:
    """CPU seconds so far: the server's processes, the benchmark's PostgreSQL (its postmaster
    and backends), the load generators', and the whole machine's (busy), to tell what else
    ran on the cores meanwhile."""
    import psutil

    def used(p: psutil.Process) -> float:
        try:
            t = p.cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    server = psutil.Process(pid)
    postgres = psutil.Process(postmaster)
    machine = psutil.cpu_times()
    return {
        "server": used(server) + sum(used(c) for c in server.children(recursive=True)),
        # the backends of connections closed meanwhile are not counted (the pools keep theirs)
        "postgres": used(postgres) + sum(used(c) for c in postgres.children()),
        "load generators": sum(used(psutil.Process(p)) for p in pool._processes),
        "elapsed": time.perf_counter(),
        "machine busy": machine.user
        + machine.system
        + machine.nice
        + getattr(machine, "irq", 0)
        + getattr(machine, "softirq", 0),
    }


async def pg_execute(dsn: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def top_statements(dsn: str, workers: int, requests: int) -> None:
    """--statements: the statements run most often in the window (pg_stat_statements), per
    request of the load, with their time."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT calls, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g') AS query "
            "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
            "WHERE datname = current_database()) ORDER BY calls DESC LIMIT 15"
        )
    finally:
        await conn.close()
    print(f"\n{workers} worker(s): statements per request ({requests} requests), ms each:")
    for row in rows:
        print(
            f"  {row['calls'] / max(requests, 1):6.2f}  "
            f"{row['total_exec_time'] / max(row['calls'], 1):7.3f}  {row['query'][:150]}"
        )


async def pg_stats(dsn: str) -> dict[str, float]:
    """PostgreSQL's counters: transactions committed, and rows written and index/sequential
    scans per table, to tell what each request costs the database."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        xact = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        rows = await conn.fetch(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS written, "
            "coalesce(idx_scan, 0) + coalesce(seq_scan, 0) AS scans FROM pg_stat_user_tables"
        )
    finally:
        await conn.close()
    stats: dict[str, float] = {"transactions": float(xact)}
    for row in rows:
        stats[f"written {row['relname']}"] = float(row["written"])
        stats[f"scans {row['relname']}"] = float(row["scans"])
    return stats


def worker_rss(pid: int) -> list[float]:
    """The resident memory (MB) of the serving processes: the workers of a supervisor, or
    the one process serving alone."""
    import psutil

    parent = psutil.Process(pid)
    workers = [
        child for child in parent.children() if "resource_tracker" not in " ".join(child.cmdline())
    ]
    return [p.memory_info().rss / 1e6 for p in workers or [parent]]


def ratios(one: Tally, two: Tally) -> str:
    """Requests/s at two workers over one, per operation and all together."""
    parts = []
    for op in OPERATIONS:
        a, b = len(one.latency.get(op, [])), len(two.latency.get(op, []))
        if a:
            parts.append(f"{op} {b / a:.2f}x")
    a = sum(len(v) for v in one.latency.values())
    b = sum(len(v) for v in two.latency.values())
    return ", ".join([*parts, f"all {b / a:.2f}x" if a else "all -"])


def merged(tallies: list[Tally]) -> Tally:
    """The rounds of one worker count as one tally: latencies and errors together, the cores
    busy averaged (equal windows), Postgres' counters summed, the last round's memory."""
    out = Tally()
    for tally in tallies:
        for op, values in tally.latency.items():
            out.latency[op].extend(values)
        out.codes.update(tally.codes)
    cpus = [getattr(t, "cpu", {}) for t in tallies]
    out.cpu = {k: sum(c[k] for c in cpus) / len(cpus) for k in cpus[0]}  # type: ignore[attr-defined]
    pgs = [getattr(t, "pg", {}) for t in tallies]
    out.pg = {k: sum(p.get(k, 0) for p in pgs) for k in pgs[0]}  # type: ignore[attr-defined]
    out.rss = getattr(tallies[-1], "rss", [])  # type: ignore[attr-defined]
    return out


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
        print(f"\n2 workers over 1, requests/s: {ratios(tallies[1], tallies[2])}")
    for workers, tally in tallies.items():
        cpu = getattr(tally, "cpu", {})
        print(
            f"{workers} worker(s): cores busy over the window: "
            + ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())
        )
    print("\n| workers | requests/s | CPU ms per request: server | Postgres | load generator |")
    print("|---|---|---|---|---|")
    for workers, tally in tallies.items():
        cpu = getattr(tally, "cpu", {})
        rate = sum(len(v) for v in tally.latency.values()) / seconds
        if rate and cpu:
            print(
                f"| {workers} | {rate:.1f} | {1000 * cpu['server'] / rate:.2f} | "
                f"{1000 * cpu['postgres'] / rate:.2f} | "
                f"{1000 * cpu['load generators'] / rate:.2f} |"
            )
    for workers, tally in tallies.items():
        pg = getattr(tally, "pg", {})
        requests = sum(len(v) for v in tally.latency.values()) or 1
        # the measured window is a little shorter than the statistics' (warm-up edges)
        busiest = sorted(
            ((k, v) for k, v in pg.items() if k != "transactions" and v), key=lambda kv: -kv[1]
        )[:10]
        print(
            f"{workers} worker(s): Postgres per request: "
            f"{pg.get('transactions', 0) / requests:.2f} transactions, "
            + ", ".join(f"{k} {v / requests:.2f}" for k, v in busiest)
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
        f"{' '.join(sys.argv[1:])}  ({os.cpu_count()} cores)"
    )
    pg, db, dsn = await seeded("workers", coaches=500, athletes=10_000, seed=11)
    try:
        sessions = await live_sessions(db, args.clients)
        if args.statements:  # pg_stat_statements loaded: a restart, undone at the end
            await db.pool.execute(
                "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
            )
            await db.close()
            await pg.stop()
            pg, db, dsn = await seeded("workers", coaches=500, athletes=10_000, seed=11)
            await db.pool.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        postmaster = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
        await db.close()
        runs: list[tuple[int, Tally]] = []
        for _ in range(args.rounds):  # alternated, so that a change of the machine's other
            for workers in args.workers:  # load falls on every worker count alike
                runs.append((workers, await mixed(dsn, workers, sessions, args, postmaster)))
    finally:
        if args.statements:
            await pg_execute(dsn, "ALTER SYSTEM RESET shared_preload_libraries")
        await pg.stop()
    what = f"{args.only} alone" if args.only else "mixed load"
    print(
        f"\n{what}: {args.clients} clients ({args.client} client), {args.seconds:g} s measured "
        f"per worker count, {args.rounds} round(s)"
    )
    if args.rounds > 1 and set(args.workers) >= {1, 2}:
        for r in range(args.rounds):
            by = {w: t for w, t in runs[r * len(args.workers) : (r + 1) * len(args.workers)]}
            print(f"round {r + 1}: 2 workers over 1, requests/s: {ratios(by[1], by[2])}")
    tallies = {w: merged([t for v, t in runs if v == w]) for w in args.workers}
    mixed_table(tallies, args.seconds * args.rounds)
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
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: benchmarks/loadgen.py's prepared requests; httpx: soak.py's client loop",
    )
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--only", choices=OPERATIONS, help="one operation alone (raw client)")
    parser.add_argument(
        "--statements",
        action="store_true",
        help="print the statements run per request (pg_stat_statements, loaded for the run)",
    )
    parser.add_argument(
        "--pin-generator", type=int, metavar="CPU", help="the load generators on this core"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1, help="the worker counts alternated")
    parser.add_argument("--fanout", type=int, default=1000, help="sessions; 0: no fan-out")
    parser.add_argument("--fanout-seconds", type=float, default=10)
    parser.add_argument("--port", type=int, default=28830)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
