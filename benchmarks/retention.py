"""Retention over millions of samples beside a plain DELETE, `series` over a year of rollups,
and an erasure of an athlete holding a million samples, in one run.

    python -m benchmarks.retention [--samples 10000000] [--days 40] [--per-day 20]
                                   [--erase-samples 1000000] [--runs 200] [--year-runs 50]

An embedded PostgreSQL of its own (deleted at the end). Samples are generated with COPY
(binary, `copy_records_to_table`, one connection per day in flight): `--per-day` completed
sessions on each of `--days` days before today, `--samples` in all, three kinds at 1 Hz. One
athlete (the one erased at the end) holds `--erase-samples` of them, in sessions on the most
recent days, which retention keeps raw; the other sessions belong to 100 athletes. Then:

1. Retention of one day (its partition): the steps of `retention._drop_day` on the oldest day,
   each timed (sessions found and locked, rolled up into minute buckets, marked compacted,
   DROP, commit); the real `_drop_day` on the next day; a plain `DELETE` of the third day's
   samples (as many rows) beside it, with what it leaves (dead tuples, the partition's size)
   and the `VACUUM` that reclaims it; then `retention.run` over the remaining old days.
2. `series` of one of those compacted sessions (from rollups) and of a raw one (p50 / p95).
3. `series` over a year from rollups: one session that lasted 365 days, worn throughout (heart
   rate and power at 1 Hz), every minute of it rolled up -- 525,600 minute buckets a kind, as
   retention leaves them (COPYed into the monthly rollup partitions). p50 / p95 at several
   bucket sizes through the store layer (`metrics.series`) and through GraphQL (the app in
   this process, over httpx's ASGI transport, as the session's coach: the request includes
   its audit row).
4. `eraseAthlete` of the athlete with `--erase-samples` samples through the app's stores (the
   networkx graph with its projector, the Postgres search, local media, the in-process
   broker): its Postgres transaction, then each other store's step, timed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import percentile
from coachgraph.stores import metrics, retention
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate

POLICY = retention.Policy(raw_days=30, rollup_days=365, ahead_days=1)
KINDS = ("HEART_RATE", "POWER", "CADENCE")
OTHERS = 100  # athletes holding the sessions that are not the erased athlete's
SECRET = "benchmark-secret-0123456789-abcdefghij"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


# --------------------------------------------------------------------------- generation
async def people(db: Database) -> tuple[int, int, list[int]]:
    """One coach; the athlete to erase; the others. Each coached by the coach."""
    coach: int = await db.pool.fetchval(
        "INSERT INTO coaches (name, sports, timezone, capacity) "
        "VALUES ('Bench', '{run}', 'UTC', 500) RETURNING id"
    )
    athletes = [
        r[0]
        for r in await db.pool.fetch(
            "INSERT INTO athletes (name, sport, timezone, level) "
            "SELECT 'Athlete ' || i, 'run', 'UTC', 2 FROM generate_series(0, $1) i RETURNING id",
            OTHERS,
        )
    ]
    await db.pool.execute(
        "INSERT INTO coach_athletes (coach_id, athlete_id) SELECT $1, unnest($2::bigint[])",
        coach,
        athletes,
    )
    await db.pool.execute(  # kept in step with coach_athletes, as the app keeps it
        "UPDATE coaches SET active_athlete_count = $2 WHERE id = $1", coach, len(athletes)
    )
    return coach, athletes[0], athletes[1:]


async def plan_sessions(
    db: Database,
    *,
    now: datetime,
    coach: int,
    victim: int,
    others: list[int],
    days: int,
    per_day: int,
    victim_sessions: int,
) -> dict[date, list[tuple[int, datetime]]]:
    """`per_day` completed sessions on each of the `days` days before `now`, each within its
    day (so a day partition holds whole sessions); the victim's are the first of each of the
    most recent days. Returns {day: [(session id, start)]}."""
    length = timedelta(minutes=1380 // per_day)  # all of a day's sessions fit in its 23 hours
    recent = min(20, days)  # the victim's days: well within the raw retention
    mine_a_day = min(per_day, -(-victim_sessions // recent))
    rows = []
    left, n = victim_sessions, 0
    for d in range(days, 0, -1):
        midnight = now - timedelta(days=d)
        for j in range(per_day):
            start = midnight + timedelta(minutes=30) + j * length
            if d <= recent and j < mine_a_day and left:
                athlete, left = victim, left - 1
            else:
                athlete, n = others[n % len(others)], n + 1
            rows.append((athlete, start, start + length))
    ids = await db.pool.fetch(
        "INSERT INTO training_sessions (coach_id, athlete_id, status, scheduled_at, started_at, "
        "ended_at) SELECT $1, a, 'COMPLETED', s, s, e "
        "FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[]) AS t(a, s, e) "
        "ORDER BY s RETURNING id, started_at",
        coach,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )
    by_day: dict[date, list[tuple[int, datetime]]] = {}
    for row in ids:
        by_day.setdefault(row["started_at"].date(), []).append((row["id"], row["started_at"]))
    return by_day


def session_records(sid: int, start: datetime, count: int) -> list[tuple[Any, ...]]:
    """`count` samples, one a second per kind (the kinds in turn), values that vary."""
    seconds = -(-count // len(KINDS))
    times = [start + timedelta(seconds=s) for s in range(seconds)]
    return [(sid, i + 1, KINDS[i % 3], times[i // 3], 90.0 + (i * 7) % 61) for i in range(count)]


async def fill_day(db: Database, sessions: list[tuple[int, datetime]], per_session: int) -> None:
    """One day's sessions' samples in one binary COPY, then their cursors."""
    records: list[tuple[Any, ...]] = []
    for sid, start in sessions:
        records.extend(session_records(sid, start, per_session))
    async with db.transaction() as conn:
        await conn.copy_records_to_table(
            "metric_samples", records=records, columns=("session_id", "seq", "kind", "at", "value")
        )
        await conn.execute(
            "UPDATE training_sessions SET sample_seq = $2 WHERE id = ANY($1::bigint[])",
            [sid for sid, _ in sessions],
            per_session,
        )


async def fill(
    db: Database, by_day: dict[date, list[tuple[int, datetime]]], per_session: int, parallel: int
) -> None:
    """Each day's COPY, `parallel` days at a time (Python builds one while PostgreSQL writes)."""
    gate = asyncio.Semaphore(parallel)

    async def one(sessions: list[tuple[int, datetime]]) -> None:
        async with gate:
            await fill_day(db, sessions, per_session)

    await asyncio.gather(*(one(sessions) for sessions in by_day.values()))


# --------------------------------------------------------------------------- 1. retention
async def relation_stats(db: Database, name: str) -> dict[str, int]:
    """Live and dead tuples (pgstattuple: exact, read when asked), and the table's size with
    its indexes."""
    row = await db.pool.fetchrow(
        "SELECT t.tuple_count, t.dead_tuple_count, pg_total_relation_size($1::regclass) AS size "
        "FROM pgstattuple($1::regclass) t",
        name,
    )
    return dict(row)


async def one_day_steps(db: Database, *, name: str, now: datetime) -> dict[str, float]:
    """`retention._drop_day`'s steps on partition `name`, each timed (seconds)."""
    marks = [("start", time.perf_counter())]
    async with db.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", retention._LOCK_KEY)
        ids = await retention._lock_sessions(conn, table=name, mode="SHARE")
        marks.append(("sessions found and locked", time.perf_counter()))
        await retention.roll_up(conn, session_ids=ids)
        marks.append(("rolled up", time.perf_counter()))
        await conn.execute(  # the rest of retention._compact (its roll_up found nothing new)
            "UPDATE training_sessions SET compacted_at = coalesce(compacted_at, $2) "
            "WHERE id = ANY($1::bigint[])",
            ids,
            now,
        )
        marks.append(("marked compacted", time.perf_counter()))
        await conn.execute(f"DROP TABLE {name}")
        marks.append(("DROP", time.perf_counter()))
    marks.append(("commit", time.perf_counter()))
    steps = {label: t - marks[i][1] for i, (label, t) in enumerate(marks[1:])}
    steps["total"] = marks[-1][1] - marks[0][1]
    return steps


async def retention_part(
    db: Database, *, now: datetime, days: list[date]
) -> tuple[list[int], list[int]]:
    """Returns (sessions compacted by it, sessions left raw)."""
    first, second, third = days[:3]
    rows = (await relation_stats(db, retention.day_partition(first)))["tuple_count"]
    print(f"\n1. retention of one day ({rows:,} samples in its partition)")
    compacted = [
        r[0]
        for r in await db.pool.fetch(
            f"SELECT DISTINCT session_id FROM {retention.day_partition(first)}"
        )
    ]
    steps = await one_day_steps(db, name=retention.day_partition(first), now=now)
    print(
        f"   retention's steps on {first}: "
        + ", ".join(f"{label} {ms(s)}" for label, s in steps.items())
    )
    started = time.perf_counter()
    await retention._drop_day(db, name=retention.day_partition(second), now=now)
    print(f"   retention._drop_day on {second}: {ms(time.perf_counter() - started)} in all")

    name = retention.day_partition(third)
    before = await relation_stats(db, name)
    low = datetime.combine(third, datetime.min.time(), tzinfo=UTC)
    started = time.perf_counter()
    status = await db.pool.execute(
        "DELETE FROM metric_samples WHERE at >= $1 AND at < $2", low, low + timedelta(days=1)
    )
    delete_s = time.perf_counter() - started
    after = await relation_stats(db, name)
    started = time.perf_counter()
    await db.pool.execute(f"VACUUM {name}")
    vacuum_s = time.perf_counter() - started
    vacuumed = await relation_stats(db, name)
    mib = 1 << 20
    print(
        f"   plain DELETE of {third}'s samples ({status.split()[-1]} rows): {ms(delete_s)}; "
        f"it leaves {after['dead_tuple_count']:,} dead tuples, the partition still "
        f"{after['size'] / mib:.1f} MiB with its indexes (was {before['size'] / mib:.1f}); "
        f"VACUUM {ms(vacuum_s)}, then {vacuumed['size'] / mib:.1f} MiB "
        f"(DELETE + VACUUM {ms(delete_s + vacuum_s)})"
    )
    started = time.perf_counter()
    report = await retention.run(db, now=now, policy=POLICY)
    print(
        f"   retention.run over the rest: {len(report.dropped)} partitions dropped, "
        f"{report.rolled_up_sessions} sessions rolled up in {time.perf_counter() - started:.1f} s"
    )
    raw = [r[0] for r in await db.pool.fetch("SELECT session_id FROM metric_samples LIMIT 1")]
    return compacted, raw


async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    """p50, p95 in ms of `runs` calls (after two unmeasured)."""
    for _ in range(2):
        await call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 0.5), percentile(times, 0.95)


async def series_part(db: Database, *, compacted: int, raw: int, runs: int) -> None:
    print("\n2. series (300 s buckets, heart rate) of one session")
    for label, sid in (("compacted, from rollups", compacted), ("raw samples", raw)):

        async def call(sid: int = sid) -> Any:
            return await metrics.series(
                db.pool, session_id=sid, kind="HEART_RATE", bucket_seconds=300, limit=10_000
            )

        p50, p95 = await timed(call, runs)
        print(f"   {label}: p50 {p50:.2f} ms, p95 {p95:.2f} ms ({len(await call())} buckets)")


# --------------------------------------------------------------------------- 3. a year
def _month(day: date) -> date:
    return day.replace(day=1)


async def year_session(db: Database, *, now: datetime, coach: int, athlete: int) -> int:
    """A session worn for 365 days, ended before the raw retention: every minute rolled up
    (heart rate and power at 1 Hz: count 60 a bucket), COPYed into its monthly partitions."""
    end = now - timedelta(days=POLICY.raw_days + 1)
    start = end - timedelta(days=365)
    month = _month(start.date())
    while month <= _month(end.date()):
        after = retention._next_month(month)
        await retention._create(
            db,
            parent=retention.ROLLUPS,
            name=retention.month_partition(month),
            column="bucket",
            low=retention._midnight(month),
            high=retention._midnight(after),
        )
        month = after
    minutes = 365 * 24 * 60
    sid: int = await db.pool.fetchval(
        "INSERT INTO training_sessions (coach_id, athlete_id, status, scheduled_at, started_at, "
        "ended_at, sample_seq, rolled_seq, compacted_at) "
        "VALUES ($1, $2, 'COMPLETED', $3, $3, $4, $5, $5, $6) RETURNING id",
        coach,
        athlete,
        start,
        end,
        minutes * 60 * 2,
        now,
    )
    async with db.pool.acquire() as conn:
        for kind, base in (("HEART_RATE", 60.0), ("POWER", 150.0)):
            for first in range(0, minutes, 100_000):
                rows = []
                for m in range(first, min(minutes, first + 100_000)):
                    low = base + m % 50
                    rows.append(
                        (
                            sid,
                            kind,
                            start + timedelta(minutes=m),
                            60,
                            low,
                            low + 40,
                            (low + 20) * 60,
                            low + 20,
                        )
                    )
                await conn.copy_records_to_table(
                    retention.ROLLUPS,
                    records=rows,
                    columns=("session_id", "kind", "bucket", "count", "min", "max", "sum", "avg"),
                )
        await conn.execute(f"ANALYZE {retention.ROLLUPS}")
    return sid


@contextlib.asynccontextmanager
async def app_client(dsn: str, root: Path) -> AsyncIterator[tuple[Any, Any]]:
    """The app in this process (its lifespan run; no background jobs) and an httpx client."""
    import httpx
    from asgi_lifespan import LifespanManager

    from coachgraph.app import create_app
    from coachgraph.config import Limits, Settings

    settings = Settings(
        data_dir=root / "data",
        jwt_secret=SECRET,
        database_url=dsn,
        graphiql=False,
        gc_tuning=False,
        limits=Limits(rate_limit_per_minute=10**9, rate_limit_burst=10**9),
    )
    app = create_app(settings, start_projector=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield client, manager._state["resources"]


async def year_part(
    db: Database, client: Any, *, sid: int, coach: int, runs: int, explain: bool
) -> None:
    from coachgraph.api.auth import issue_token
    from coachgraph.ids import to_global_id
    from coachgraph.resolvers.policy import Role

    rollups = await db.pool.fetchval(
        "SELECT count(*) FROM metric_rollups WHERE session_id = $1", sid
    )
    print(
        f"\n3. series over a year from rollups: one 365-day session, {rollups:,} minute rollups "
        "(heart rate and power); heart rate read"
    )
    token = issue_token(
        SECRET, role=Role.COACH, subject=to_global_id("Coach", coach), ttl_seconds=3600
    )
    headers = {"Authorization": f"Bearer {token}"}
    query = (
        "query($id: ID!, $b: Int!) { node(id: $id) { ... on TrainingSession { "
        "series(kind: HEART_RATE, bucketSeconds: $b) { start count min max avg } } } }"
    )
    gid = to_global_id("TrainingSession", sid)
    if explain:  # the plan of the store layer's statement, for 3600 s buckets
        async with db.pool.acquire() as conn:
            queries: list[str] = []
            conn.add_query_logger(lambda record: queries.append(record.query))
            await metrics.series(
                conn, session_id=sid, kind="HEART_RATE", bucket_seconds=3600, limit=10_000
            )
            await asyncio.sleep(0.01)  # (asyncpg calls query loggers soon after, not at once)
            statement = next(q for q in reversed(queries) if "date_bin" in q)
            plan = await conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS) {statement}", sid, "HEART_RATE", 3600, 10_000
            )
        lines = [r[0] for r in plan]  # the top of it (one scan a partition below) and the time
        print("   " + "\n   ".join([*lines[:22], "   ...", *lines[-3:]]))
    for bucket in (3600, 21600, 86400):

        async def store(bucket: int = bucket) -> Any:
            return await metrics.series(
                db.pool, session_id=sid, kind="HEART_RATE", bucket_seconds=bucket, limit=10_000
            )

        async def gql(bucket: int = bucket) -> Any:
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": {"id": gid, "b": bucket}},
                headers=headers,
            )
            body = response.json()
            if "errors" in body:
                raise RuntimeError(body["errors"])
            return body["data"]["node"]["series"]

        got = await gql()
        assert len(got) == len(await store()), "GraphQL and the store disagree"
        p50, p95 = await timed(store, runs)
        g50, g95 = await timed(gql, runs)
        print(
            f"   bucketSeconds {bucket:>6} ({len(got):,} buckets): store layer p50 {p50:.1f} ms, "
            f"p95 {p95:.1f} ms; GraphQL p50 {g50:.1f} ms, p95 {g95:.1f} ms"
        )


# --------------------------------------------------------------------------- 4. erasure
async def erasure_part(resources: Any, *, athlete: int) -> None:
    from coachgraph.lifecycle import erasure
    from coachgraph.stores import erasure as store

    db = resources.db
    stores = resources.lifecycle
    samples = await db.pool.fetchval(
        "SELECT count(*) FROM metric_samples m JOIN training_sessions s ON s.id = m.session_id "
        "WHERE s.athlete_id = $1",
        athlete,
    )
    sessions = await db.pool.fetchval(
        "SELECT count(*) FROM training_sessions WHERE athlete_id = $1", athlete
    )
    print(f"\n4. eraseAthlete of an athlete with {samples:,} samples in {sessions} sessions")
    took: dict[str, float] = {}

    def timing(label: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                took[label] = took.get(label, 0.0) + time.perf_counter() - started

        return wrapped

    # the same calls as erasure.erase, its Postgres transaction timed apart (with its commit)
    stores.projector.catch_up = timing(
        "graph + search (projector catch-up)", stores.projector.catch_up
    )
    stores.media.delete = timing("media", stores.media.delete)
    stores.broker.forget = timing("broker", stores.broker.forget)
    started = time.perf_counter()
    subject = erasure.subject_of(stores.key, "Athlete", athlete)
    async with db.transaction() as conn:
        erased = await store.erase_records(
            conn, athlete_id=athlete, subject=subject, topics_of=erasure.TOPICS
        )
    postgres_s = time.perf_counter() - started
    stores.erased.ids.add(athlete)
    rest = time.perf_counter()
    done = await erasure.complete(stores, erased)
    rest_s = time.perf_counter() - rest
    total = time.perf_counter() - started
    print(f"   stores: {', '.join(done.stores)}; finished: {done.finished_at is not None}")
    print(
        f"   {ms(total)} in all: Postgres transaction (records, samples, rollups) "
        f"{ms(postgres_s)}; the other stores {ms(rest_s)}: "
        + ", ".join(f"{label} {ms(s)}" for label, s in took.items())
        + f", marks and finish {ms(rest_s - sum(took.values()))}"
    )
    left = await db.pool.fetchval(
        "SELECT count(*) FROM training_sessions WHERE athlete_id = $1", athlete
    )
    assert left == 0, "sessions left behind"


# --------------------------------------------------------------------------- main
async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="coachgraph-bench-retention-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pg", delete_on_stop=True)
    dsn = await server.start()
    db = await Database.connect(dsn, min_size=1, max_size=args.parallel + 2)
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn)
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        # partitions for every generated day (as the app made them while those days were recent)
        await retention.ensure_partitions(
            db, now=now - timedelta(days=args.days - POLICY.raw_days), policy=POLICY
        )
        await retention.ensure_partitions(db, now=now, policy=POLICY)
        coach, victim, others = await people(db)
        sessions = args.days * args.per_day
        per_session = args.samples // sessions
        by_day = await plan_sessions(
            db,
            now=now,
            coach=coach,
            victim=victim,
            others=others,
            days=args.days,
            per_day=args.per_day,
            victim_sessions=args.erase_samples // per_session,
        )
        started = time.perf_counter()
        await fill(db, by_day, per_session, args.parallel)
        total = await db.pool.fetchval("SELECT count(*) FROM metric_samples")
        copy_s = time.perf_counter() - started
        print(
            f"{total:,} samples ({sessions} sessions of {per_session:,}) COPYed in {copy_s:.1f} s "
            f"({total / copy_s:,.0f} a second)"
        )
        started = time.perf_counter()
        await db.pool.execute("VACUUM ANALYZE metric_samples")
        print(f"VACUUM ANALYZE of all of them: {time.perf_counter() - started:.1f} s")

        compacted, raw = await retention_part(db, now=now, days=sorted(by_day))
        await series_part(db, compacted=compacted[0], raw=raw[0], runs=args.runs)

        started = time.perf_counter()
        year = await year_session(db, now=now, coach=coach, athlete=others[0])
        print(f"\n(a year of rollups COPYed in {time.perf_counter() - started:.1f} s)")
        async with app_client(dsn, root) as (client, resources):
            await year_part(
                db, client, sid=year, coach=coach, runs=args.year_runs, explain=args.explain
            )
            await erasure_part(resources, athlete=victim)
    finally:
        await db.close()
        await server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--per-day", type=int, default=20)
    parser.add_argument("--erase-samples", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--year-runs", type=int, default=50, help="timed series over the year")
    parser.add_argument("--explain", action="store_true", help="the year series' plan")
    parser.add_argument("--parallel", type=int, default=2, help="days COPYed at once")
    args = parser.parse_args()
    started = datetime.now(UTC)
    print(f"{started:%Y-%m-%d %H:%M} UTC  python -m benchmarks.retention {vars(args)}")
    asyncio.run(main(args))
