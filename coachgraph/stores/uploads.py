"""Uploads of samples (NDJSON bodies, wearable files) by the SHA-256 of their bytes, per session,
so a retried upload stores nothing again; and what a file's samples overlap (stored seconds,
minutes rolled up by retention)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coachgraph.errors import NotFound
from coachgraph.stores.sql import Executor


@dataclass(frozen=True, slots=True)
class Upload:
    """What an upload stored: `accepted` samples with cursors from `first_seq` on, `skipped`
    ones the session already held (files only)."""

    source: str
    first_seq: int
    accepted: int
    skipped: int


@dataclass(frozen=True, slots=True)
class Locked:
    """A session as it is once its row is locked for a file's samples."""

    status: str
    started_at: datetime | None
    ended_at: datetime | None
    program_id: int | None
    athlete_id: int
    sample_seq: int


_COLUMNS = "source, first_seq, accepted, skipped"


async def find(conn: Executor, *, session_id: int, digest: bytes) -> Upload | None:
    """The upload of these bytes into this session, if one committed."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM sample_uploads WHERE session_id = $1 AND digest = $2",
        session_id,
        digest,
    )
    return None if row is None else Upload(**row)


async def claim(conn: Executor, *, session_id: int, digest: bytes, upload: Upload) -> Upload | None:
    """Record an upload in the caller's transaction (the one storing its samples); None when
    it is the first of these bytes, else the earlier upload (an uncommitted one is waited
    for: a retry sent while the first still runs answers as the first, once it commits)."""
    done = await conn.fetchval(
        "INSERT INTO sample_uploads (session_id, digest, source, first_seq, accepted, skipped) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id, digest) DO NOTHING RETURNING 1",
        session_id,
        digest,
        upload.source,
        upload.first_seq,
        upload.accepted,
        upload.skipped,
    )
    if done is not None:
        return None
    return await find(conn, session_id=session_id, digest=digest)


async def lock_session(conn: Executor, *, session_id: int) -> Locked:
    """The session's row, locked until commit as a batch's cursor reservation locks it: every
    write of its samples waits, so what is read next stays true until this one commits."""
    row = await conn.fetchrow(
        "SELECT status::text AS status, started_at, ended_at, program_id, athlete_id, sample_seq "
        "FROM training_sessions WHERE id = $1 FOR NO KEY UPDATE",
        session_id,
    )
    if row is None:
        raise NotFound("TrainingSession", session_id)
    return Locked(**row)


async def held_seconds(
    conn: Executor, *, session_id: int, kinds: list[str], start: datetime, until: datetime
) -> set[tuple[str, datetime]]:
    """(kind, second) of the session's stored samples of `kinds` from `start` to `until`
    (inclusive), their times truncated to the second (UTC)."""
    rows = await conn.fetch(
        "SELECT DISTINCT kind::text AS kind, date_trunc('second', at, 'UTC') AS second "
        "FROM metric_samples WHERE session_id = $1 AND kind::text = ANY($2::text[]) "
        "AND at >= date_trunc('second', $3::timestamptz, 'UTC') "
        "AND at < date_trunc('second', $4::timestamptz, 'UTC') + interval '1 second'",
        session_id,
        kinds,
        start,
        until,
    )
    return {(r["kind"], r["second"]) for r in rows}


async def rolled_minutes(
    conn: Executor, *, session_id: int, kinds: list[str]
) -> set[tuple[str, datetime]]:
    """(kind, minute bucket) of the session's samples rolled up by retention (the buckets
    align to the session's start): those samples are counted there, their raw rows gone."""
    rows = await conn.fetch(
        "SELECT kind::text AS kind, bucket FROM metric_rollups "
        "WHERE session_id = $1 AND kind::text = ANY($2::text[])",
        session_id,
        kinds,
    )
    return {(r["kind"], r["bucket"]) for r in rows}
