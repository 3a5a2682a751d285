"""Retention beside a plain DELETE, series from rollups, and an erasure, in one run.

Samples are generated with COPY into an embedded PostgreSQL: `--sessions` sessions, each on
its own day among `--days` days (so a day partition holds sessions' worth of samples). Then:
rolling up and dropping the oldest day's partition (retention's step) is timed beside a plain
`DELETE` of another day holding the same number of rows; `series` of a compacted session
(from its rollups) and of a raw one are timed (p50/p95); and an athlete holding
`--erase-samples` samples is erased (its Postgres transaction, then the other stores).

    python benchmarks/retention.py [--samples 1000000] [--days 40]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.common import percentile
from coachgraph.lifecycle import erasure
from coachgraph.media.local import LocalMediaStore
from coachgraph.search.postgres import PostgresSearch
from coachgraph.stores import metrics, retention
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate
from coachgraph.subscriptions.broker import MemoryBroker

POLICY = retention.Policy(raw_days=30, rollup_days=365, ahead_days=1)
KINDS = ("HEART_RATE", "POWER", "CADENCE")


async def sessions_on_days(db: Database, *, now: datetime, days: int, per_day: int) -> list[int]:
    """`per_day` completed sessions on each of the `days` days before `now`, one athlete each."""
    coach = await db.pool.fetchval(
        "INSERT INTO coaches (name, sports, timezone, capacity) "
        "VALUES ('Bench', '{run}', 'UTC', 500) RETURNING id"
    )
    ids = []
    for d in range(days, 0, -1):
        start = now - timedelta(days=d) + timedelta(hours=1)
        for _ in range(per_day):
            athlete = await db.pool.fetchval(
                "INSERT INTO athletes (name, sport, timezone, level) "
                "VALUES ('A', 'run', 'UTC', 2) RETURNING id"
            )
            ids.append(
                await db.pool.fetchval(
                    "INSERT INTO training_sessions (coach_id, athlete_id, status, scheduled_at, "
                    "started_at, ended_at) VALUES ($1, $2, 'COMPLETED', $3::timestamptz, $3, "
                    "$3::timestamptz + interval '3 hours') RETURNING id",
                    coach,
                    athlete,
                    start,
                )
            )
    return ids


async def fill(db: Database, *, session_ids: list[int], per_session: int) -> None:
    """COPY `per_session` samples (one a second, kinds in turn) into each session."""
    async with db.pool.acquire() as conn:
        for sid in session_ids:
            start = await conn.fetchval(
                "SELECT started_at FROM training_sessions WHERE id = $1", sid
            )
            rows = [
                (sid, i + 1, KINDS[i % 3], start + timedelta(seconds=i // 3), 90.0 + i % 60)
                for i in range(per_session)
            ]
            await conn.copy_records_to_table(
                "metric_samples", records=rows, columns=("session_id", "seq", "kind", "at", "value")
            )
            await conn.execute(
                "UPDATE training_sessions SET sample_seq = $2 WHERE id = $1", sid, per_session
            )


async def timed_series(db: Database, session_id: int, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await metrics.series(
            db.pool, session_id=session_id, kind="HEART_RATE", bucket_seconds=300, limit=10_000
        )
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 0.5), percentile(times, 0.95)


async def main(samples: int, days: int, per_day: int, erase_samples: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="coachgraph-bench-retention-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pg", delete_on_stop=True)
    dsn = await server.start()
    db = await Database.connect(dsn, min_size=1, max_size=4)
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn)
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        # partitions for every generated day (as the app made them while those days were recent)
        await retention.ensure_partitions(db, now=now - timedelta(days=days - 30), policy=POLICY)
        await retention.ensure_partitions(db, now=now, policy=POLICY)
        ids = await sessions_on_days(db, now=now, days=days, per_day=per_day)
        per_session = samples // len(ids)
        started = time.perf_counter()
        await fill(db, session_ids=ids, per_session=per_session)
        total = await db.pool.fetchval("SELECT count(*) FROM metric_samples")
        print(f"{total:,} samples COPYed in {time.perf_counter() - started:.1f} s")
        await db.pool.execute("VACUUM ANALYZE metric_samples")

        oldest = (now - timedelta(days=days)).date()
        day = retention.day_partition(oldest)
        rows = await db.pool.fetchval(f"SELECT count(*) FROM {day}")
        sessions = [r[0] for r in await db.pool.fetch(f"SELECT DISTINCT session_id FROM {day}")]
        started = time.perf_counter()
        async with db.transaction() as conn:
            await retention.roll_up(conn, session_ids=sessions)
        roll_s = time.perf_counter() - started
        steps = []
        started = time.perf_counter()
        async with db.transaction() as conn:  # retention._drop_day's steps, each timed
            ids = await retention._lock_sessions(conn, table=day, mode="SHARE")
            steps.append(time.perf_counter())
            await retention._compact(conn, session_ids=ids, now=now)
            steps.append(time.perf_counter())
            await conn.execute(f"DROP TABLE {day}")
            steps.append(time.perf_counter())
        drop_s = time.perf_counter() - started
        lock_ms, compact_ms, drop_ms, commit_ms = (
            (b - a) * 1000
            for a, b in zip([started, *steps], [*steps, started + drop_s], strict=True)
        )
        print(
            f"  of which: sessions found and locked {lock_ms:.0f} ms, marked compacted "
            f"{compact_ms:.0f} ms, DROP {drop_ms:.0f} ms, commit {commit_ms:.0f} ms"
        )
        low = datetime.combine(oldest + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        same = await db.pool.fetchval(
            "SELECT count(*) FROM metric_samples WHERE at >= $1 AND at < $2",
            low,
            low + timedelta(days=1),
        )
        started = time.perf_counter()
        await db.pool.execute(
            "DELETE FROM metric_samples WHERE at >= $1 AND at < $2", low, low + timedelta(days=1)
        )
        delete_s = time.perf_counter() - started
        print(
            f"one day ({rows:,} samples): roll up {roll_s * 1000:.0f} ms, then DROP partition "
            f"{drop_s * 1000:.0f} ms"
        )
        print(
            f"one day ({same:,} samples): plain DELETE {delete_s * 1000:.0f} ms (dead rows "
            "left for VACUUM)"
        )

        started = time.perf_counter()
        report = await retention.run(db, now=now, policy=POLICY)
        print(
            f"retention.run: {len(report.dropped)} partitions dropped, "
            f"{report.rolled_up_sessions} sessions rolled up in {time.perf_counter() - started:.1f} s"
        )
        compacted, raw = ids[0], ids[-1]
        p50, p95 = await timed_series(db, compacted, 200)
        print(f"series (300 s buckets) from rollups: p50 {p50:.2f} ms, p95 {p95:.2f} ms")
        p50, p95 = await timed_series(db, raw, 200)
        print(
            f"series (300 s buckets) from raw {per_session:,} samples: p50 {p50:.2f} ms, p95 {p95:.2f} ms"
        )

        victim = ids[-2]
        await db.pool.execute("UPDATE training_sessions SET sample_seq = 0 WHERE id = $1", victim)
        await db.pool.execute("DELETE FROM metric_samples WHERE session_id = $1", victim)
        await fill(db, session_ids=[victim], per_session=erase_samples)
        athlete = await db.pool.fetchval(
            "SELECT athlete_id FROM training_sessions WHERE id = $1", victim
        )
        media = LocalMediaStore(root / "media", secret="bench")
        await media.start()
        stores = erasure.Stores(db, media, MemoryBroker(), PostgresSearch(db), None, key="bench")
        started = time.perf_counter()
        await erasure.erase(stores, athlete_id=athlete)
        print(
            f"erasure of an athlete with {erase_samples:,} samples: "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )
    finally:
        await db.close()
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--per-day", type=int, default=5)
    parser.add_argument("--erase-samples", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(main(args.samples, args.days, args.per_day, args.erase_samples))
