"""Metric samples: one COPY per batch, read back by cursor, bucketed and summarised in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coachgraph.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from coachgraph.stores.sql import Executor, returned


@dataclass(frozen=True, slots=True)
class Sample:
    seq: int
    kind: str
    at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class LiveSession:
    """What ingestion checks a batch against: who may write, and since when it is live."""

    id: int
    coach_id: int
    athlete_id: int
    status: str
    started_at: datetime | None
    coached: bool  # its coach still coaches its athlete
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    count: int
    min: float
    max: float
    avg: float


@dataclass(frozen=True, slots=True)
class Summary:
    sample_count: int
    avg_heart_rate: float | None
    max_heart_rate: float | None
    duration_seconds: int | None


async def live_session(conn: Executor, *, session_id: int) -> LiveSession:
    row = await conn.fetchrow(
        "SELECT s.id, s.coach_id, s.athlete_id, s.status::text AS status, s.started_at, "
        "s.ended_at, EXISTS (SELECT 1 FROM coach_athletes ca WHERE ca.coach_id = s.coach_id "
        "AND ca.athlete_id = s.athlete_id) AS coached "
        "FROM training_sessions s WHERE s.id = $1",
        session_id,
    )
    if row is None:
        raise NotFound("TrainingSession", session_id)
    return LiveSession(**row)


ENDED = frozenset({"COMPLETED", "CANCELLED"})  # statuses a session never leaves


@dataclass(frozen=True, slots=True)
class Progress:
    """A session's status and the cursor of its last committed sample (0 before the first)."""

    status: str
    last_seq: int

    @property
    def ended(self) -> bool:
        """Past LIVE for good: `last_seq` is final, and every sample up to it is stored."""
        return self.status in ENDED


async def progress(conn: Executor, *, session_id: int) -> Progress:
    """Status and last cursor, read together. A live-only subscriber starts after the cursor
    and reads back from it what the broker did not bring. Once the status has left LIVE no
    batch commits any more (`append` reserves its cursors only while the row says LIVE, and
    holds that row, which the status change must update, until its commit), so an ended
    session's stored samples are all there is when read. (A COMPLETED session still takes a
    wearable's file, `append(completed_too=True)`: its samples get the cursors after these, and
    a later read sees them; a stream that has returned does not.)"""
    row = await conn.fetchrow(
        "SELECT status::text AS status, sample_seq FROM training_sessions WHERE id = $1",
        session_id,
    )
    if row is None:
        raise NotFound("TrainingSession", session_id)
    return Progress(row["status"], int(row["sample_seq"] or 0))


async def append(
    conn: Executor,
    *,
    session_id: int,
    samples: list[tuple[str, datetime, float]],
    by_its_coach: bool = False,
    completed_too: bool = False,
) -> int:
    """Store a validated batch in one COPY (inside a transaction); return its first cursor.

    The session must still be LIVE (or, with `completed_too`, COMPLETED: a wearable file
    uploaded after the ride): the reservation takes its row lock, so a session ended
    meanwhile refuses the batch, and batches of one session commit in cursor order.
    `by_its_coach` (the writer is the session's coach): the coach must still coach the
    athlete, and the same statement holds that relationship FOR SHARE until commit, so an
    unassignment either came first (the batch is refused) or waits for the commit.
    """
    row = returned(
        await conn.fetchrow(
            "WITH link AS (SELECT FROM coach_athletes ca JOIN training_sessions s "
            "ON ca.coach_id = s.coach_id AND ca.athlete_id = s.athlete_id "
            "WHERE s.id = $1 AND $3 FOR SHARE OF ca), "
            "allowed AS (SELECT NOT $3 OR EXISTS (SELECT FROM link) AS ok), "
            "bumped AS (UPDATE training_sessions SET sample_seq = sample_seq + $2 "
            "WHERE id = $1 AND (status = 'LIVE' OR ($4 AND status = 'COMPLETED')) "
            "AND (SELECT ok FROM allowed) RETURNING sample_seq) "
            "SELECT (SELECT ok FROM allowed) AS allowed, (SELECT sample_seq FROM bumped) AS last",
            session_id,
            len(samples),
            by_its_coach,
            completed_too,
        )
    )
    if not row["allowed"]:
        raise PermissionDenied("A former coach writes no samples of this session")
    last = row["last"]
    if last is None:
        raise Conflict("The session is not LIVE" + (" or COMPLETED" if completed_too else ""))
    first: int = last - len(samples) + 1
    await conn.copy_records_to_table(
        "metric_samples",
        records=[(session_id, first + i, k, at, v) for i, (k, at, v) in enumerate(samples)],
        columns=("session_id", "seq", "kind", "at", "value"),
    )
    return first


async def after(
    conn: Executor,
    *,
    session_id: int,
    after_seq: int,
    kinds: list[str] | None,
    limit: int,
    before_seq: int | None = None,
) -> list[Sample]:
    """Samples with a cursor above `after_seq` (and below `before_seq`), in cursor order."""
    rows = await conn.fetch(
        "SELECT seq, kind::text AS kind, at, value FROM metric_samples "
        "WHERE session_id = $1 AND seq > $2 AND ($3::bigint IS NULL OR seq < $3) "
        "AND ($4::metric_kind[] IS NULL OR kind = ANY($4::metric_kind[])) "
        "ORDER BY seq LIMIT $5",
        session_id,
        after_seq,
        before_seq,
        kinds,
        limit,
    )
    return [Sample(*r) for r in rows]


async def count(conn: Executor, *, session_id: int, kinds: list[str] | None) -> int:
    total: int = await conn.fetchval(
        "SELECT count(*) FROM metric_samples WHERE session_id = $1 "
        "AND ($2::metric_kind[] IS NULL OR kind = ANY($2::metric_kind[]))",
        session_id,
        kinds,
    )
    return total


@dataclass(frozen=True, slots=True)
class Retained:
    """Whether a session's raw samples were rolled up and (some) dropped, and up to which
    cursor its 1-minute rollups hold them."""

    compacted: bool
    rolled_seq: int


async def retained(conn: Executor, *, session_id: int) -> Retained:
    row = await conn.fetchrow(
        "SELECT compacted_at IS NOT NULL AS compacted, rolled_seq FROM training_sessions "
        "WHERE id = $1",
        session_id,
    )
    return Retained(bool(row and row["compacted"]), int(row["rolled_seq"]) if row else 0)


ROLLUP_SECONDS = 60  # a compacted session's series comes in multiples of its minute buckets


async def series(
    conn: Executor, *, session_id: int, kind: str, bucket_seconds: int, limit: int
) -> list[Bucket]:
    """Time buckets of one kind, aligned to the session's start (or its first sample): from
    raw samples while the session has them all, from its minute rollups (and any raw sample
    after them) once compacted, when `bucket_seconds` must be a multiple of 60."""
    state = await retained(conn, session_id=session_id)
    if state.compacted:
        if bucket_seconds % ROLLUP_SECONDS:
            raise InvalidInput(
                "Raw samples of this session were rolled up into 1-minute buckets: "
                "bucketSeconds must be a multiple of 60",
                field="bucketSeconds",
                code="COMPACTED",
            )
        return await _rolled_series(
            conn, session_id=session_id, kind=kind, bucket_seconds=bucket_seconds, limit=limit
        )
    rows = await conn.fetch(
        """SELECT date_bin(make_interval(secs => $3), m.at, o.origin) AS start,
                  count(*)::int AS count, min(value) AS min, max(value) AS max, avg(value) AS avg
           FROM metric_samples m,
                LATERAL (SELECT coalesce(s.started_at, (SELECT min(at) FROM metric_samples
                         WHERE session_id = $1), now()) AS origin
                         FROM training_sessions s WHERE s.id = $1) o
           WHERE m.session_id = $1 AND m.kind = $2::metric_kind
           GROUP BY 1 ORDER BY 1 LIMIT $4""",
        session_id,
        kind,
        bucket_seconds,
        limit,
    )
    return [Bucket(**r) for r in rows]


async def _rolled_series(
    conn: Executor, *, session_id: int, kind: str, bucket_seconds: int, limit: int
) -> list[Bucket]:
    rows = await conn.fetch(
        """WITH s AS (SELECT coalesce(started_at, scheduled_at) AS origin, rolled_seq
                      FROM training_sessions WHERE id = $1),
                p AS (SELECT bucket AS at, count AS n, min AS lo, max AS hi, sum AS total
                      FROM metric_rollups WHERE session_id = $1 AND kind = $2::metric_kind
                      UNION ALL
                      SELECT m.at, 1, m.value, m.value, m.value FROM metric_samples m, s
                      WHERE m.session_id = $1 AND m.kind = $2::metric_kind AND m.seq > s.rolled_seq)
           SELECT date_bin(make_interval(secs => $3), p.at, s.origin) AS start,
                  sum(p.n)::int AS count, min(p.lo) AS min, max(p.hi) AS max,
                  sum(p.total) / sum(p.n) AS avg
           FROM p, s GROUP BY 1 ORDER BY 1 LIMIT $4""",
        session_id,
        kind,
        bucket_seconds,
        limit,
    )
    return [Bucket(**r) for r in rows]


async def summaries(conn: Executor, *, session_ids: list[int]) -> dict[int, Summary]:
    """Per session: sample count, heart-rate average and peak, and how long it ran."""
    rows = await conn.fetch(
        """SELECT s.id, coalesce(m.n, 0)::int AS sample_count, m.avg_hr, m.max_hr,
                  extract(epoch FROM coalesce(s.ended_at, CASE WHEN s.status = 'LIVE'
                      THEN now() END) - s.started_at)::int AS duration
           FROM training_sessions s
           LEFT JOIN LATERAL (
               SELECT count(*) AS n,
                      avg(value) FILTER (WHERE kind = 'HEART_RATE') AS avg_hr,
                      max(value) FILTER (WHERE kind = 'HEART_RATE') AS max_hr
               FROM metric_samples WHERE session_id = s.id AND s.compacted_at IS NULL
               HAVING s.compacted_at IS NULL
               UNION ALL  -- compacted: its minute rollups, and raw samples after them
               SELECT sum(p.n),
                      sum(p.total) FILTER (WHERE p.kind = 'HEART_RATE')
                          / sum(p.n) FILTER (WHERE p.kind = 'HEART_RATE'),
                      max(p.hi) FILTER (WHERE p.kind = 'HEART_RATE')
               FROM (SELECT kind, count AS n, sum AS total, max AS hi FROM metric_rollups
                     WHERE session_id = s.id
                     UNION ALL
                     SELECT kind, 1, value, value FROM metric_samples
                     WHERE session_id = s.id AND seq > s.rolled_seq) p
               WHERE s.compacted_at IS NOT NULL
               HAVING s.compacted_at IS NOT NULL) m ON true
           WHERE s.id = ANY($1::bigint[])""",
        session_ids,
    )
    return {
        r["id"]: Summary(r["sample_count"], r["avg_hr"], r["max_hr"], r["duration"]) for r in rows
    }
