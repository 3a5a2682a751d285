"""A wearable's file into a session's samples: once per file, only what the session lacks, and
the program's leaderboards told when the session has completed.

* The same bytes into the same session again (a client retrying after a timeout) store
  nothing and get the first upload's answer, `replayed`: the file's SHA-256 is recorded in the
  transaction that stores its samples (stores/uploads.py).
* A sample of a kind the session already holds in that second (UTC, truncated), or in a
  minute retention has rolled up, is left out and counted in `skipped`: another export of the
  same ride, or the file of a ride streamed live, adds only what is missing. Every sample is checked first, as always: one bad sample refuses
  the file.
* The session's row is locked for the whole write, so two uploads of one session, or an
  upload and a live batch, never both store the same second."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from coachgraph.errors import Conflict, DomainError
from coachgraph.leaderboards.model import Leaderboards
from coachgraph.resolvers.live import (
    RawSample,
    Recorded,
    check_in_session,
    replayed,
    samples_message,
    writable_live_session,
)
from coachgraph.resolvers.policy import Viewer
from coachgraph.stores import metrics, uploads
from coachgraph.stores.db import Database
from coachgraph.stores.sql import Executor
from coachgraph.subscriptions.broker import Broker
from coachgraph.subscriptions.topics import metrics_topic

log = logging.getLogger(__name__)

TAKES = ("LIVE", "COMPLETED")


async def earlier_upload(
    db: Database, *, session_id: int, digest: bytes
) -> tuple[str, Recorded] | None:
    """The format and answer of an earlier upload of these bytes into the session, if any."""
    found = await uploads.find(db.pool, session_id=session_id, digest=digest)
    return None if found is None else (found.source, replayed(found))


async def record_file(
    db: Database,
    broker: Broker,
    boards: Leaderboards | None,
    viewer: Viewer,
    session_id: int,
    samples: list[RawSample],
    *,
    source: str,
    digest: bytes,
    clock_slack: timedelta,
    chunk: int,
) -> Recorded:
    """Store a file's samples the session lacks, in COPYs of `chunk`, in one transaction with
    the record of its digest; publish them after the commit, then refresh the leaderboards
    (`boards`; None: computed in Postgres) when the session has completed."""
    session = await writable_live_session(db, viewer, session_id, completed_too=True)
    assert session.started_at is not None
    ended = session.ended_at if session.status == "COMPLETED" else None
    checked = await asyncio.to_thread(_check, samples, session.started_at, ended, clock_slack)
    by_its_coach = viewer.is_coach(session.coach_id)
    async with db.transaction() as conn:
        locked = await uploads.lock_session(conn, session_id=session_id)
        if locked.status not in TAKES or locked.started_at is None:
            raise Conflict(f"A {locked.status} session takes no samples")
        if locked.status != session.status:  # it ended meanwhile: its end bounds the file
            checked = _check(samples, locked.started_at, locked.ended_at, clock_slack)
        earlier = await uploads.find(conn, session_id=session_id, digest=digest)
        if earlier is not None:  # sent meanwhile, and committed first
            return replayed(earlier)
        fresh = await _lacking(conn, session_id, locked.started_at, checked)
        written: list[tuple[int, list[RawSample]]] = []
        for start in range(0, len(fresh), chunk):
            part = fresh[start : start + chunk]
            first = await metrics.append(
                conn,
                session_id=session_id,
                samples=part,
                by_its_coach=by_its_coach,
                completed_too=True,
            )
            written.append((first, part))
        first_seq = written[0][0] if written else locked.sample_seq + 1
        upload = uploads.Upload(source, first_seq, len(fresh), len(checked) - len(fresh))
        await uploads.claim(conn, session_id=session_id, digest=digest, upload=upload)
    for first, part in written:
        await broker.publish(metrics_topic(session_id), samples_message(first, part))
    if locked.status == "COMPLETED" and written:
        await _refresh_boards(boards, locked.program_id, locked.athlete_id)
    return Recorded(first_seq, upload.accepted, upload.skipped)


def _check(
    samples: list[RawSample],
    started_at: datetime,
    ended_at: datetime | None,
    clock_slack: timedelta,
) -> list[RawSample]:
    return check_in_session(
        samples, started_at=started_at, ended_at=ended_at, clock_slack=clock_slack, where="samples"
    )


async def _lacking(
    conn: Executor, session_id: int, started_at: datetime, checked: list[RawSample]
) -> list[RawSample]:
    """The samples whose kind the session holds nothing of in their second, nor in a minute
    retention has rolled up (adding to it would count that minute twice), in file order."""
    kinds = sorted({kind for kind, _, _ in checked})
    held = await uploads.held_seconds(
        conn,
        session_id=session_id,
        kinds=kinds,
        start=min(at for _, at, _ in checked),
        until=max(at for _, at, _ in checked),
    )
    rolled = await uploads.rolled_minutes(conn, session_id=session_id, kinds=kinds)
    if not held and not rolled:
        return checked
    return [
        (kind, at, value)
        for kind, at, value in checked
        if (kind, _second(at)) not in held and (kind, _minute(at, started_at)) not in rolled
    ]


def _second(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(microsecond=0)


def _minute(at: datetime, origin: datetime) -> datetime:
    """The minute bucket holding `at`, aligned to `origin` (SQL's date_bin, as retention)."""
    return origin + (at - origin) // _MINUTE * _MINUTE


_MINUTE = timedelta(minutes=1)


async def _refresh_boards(
    boards: Leaderboards | None, program_id: int | None, athlete: int
) -> None:
    """The athlete's places on the program's boards, after commit (Redis keeps them; Postgres
    computes them at each request). A failure is logged, not the upload's: the samples are
    committed, and the next refresh or `coachgraph reindex --leaderboards` puts it right."""
    if boards is None or program_id is None:
        return
    try:
        await boards.refresh(program_id=program_id, athlete_id=athlete, now=datetime.now(UTC))
    except DomainError as err:
        log.warning("leaderboard refresh of program %s failed: %s", program_id, err.message)
