"""A coach unassigned while its samples are on their way writes none of them: the write
itself checks, and holds until commit, that the coach still coaches the athlete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from coachgraph.config import Limits
from coachgraph.errors import PermissionDenied
from coachgraph.resolvers import live
from coachgraph.resolvers.live import RawSample
from coachgraph.resolvers.policy import Role, Viewer
from coachgraph.stores import coaches, metrics
from coachgraph.stores.db import Database
from coachgraph.stores.records import SessionRecord
from coachgraph.subscriptions.broker import MemoryBroker
from tests.factories import Factory
from tests.live.conftest import live_session


def batch(n: int) -> list[RawSample]:
    start = datetime.now(UTC) - timedelta(seconds=1)
    return [("HEART_RATE", start + timedelta(milliseconds=i), 60.0 + i) for i in range(n)]


async def unassigned_first(
    db: Database, session: SessionRecord, chunks: list[list[RawSample]]
) -> AsyncIterator[list[RawSample]]:
    """The chunks, once the session's coach was unassigned: after the permission check (it
    ran before the first chunk is pulled), inside the transaction that writes them."""
    async with db.transaction() as conn:
        await coaches.unassign(conn, coach_id=session.coach_id, athlete_id=session.athlete_id)
    for chunk in chunks:
        yield chunk


async def stored(db: Database, session_id: int) -> tuple[int, int]:
    row = await db.pool.fetchrow(
        "SELECT (SELECT count(*) FROM metric_samples WHERE session_id = $1) AS n, "
        "sample_seq FROM training_sessions WHERE id = $1",
        session_id,
    )
    return row["n"], row["sample_seq"]


async def record(db: Database, viewer: Viewer, session: SessionRecord) -> live.Recorded:
    broker = MemoryBroker()
    await broker.start()
    try:
        chunks = unassigned_first(db, session, [batch(5), batch(3)])
        slack = live.clock_slack(Limits())
        return await live.record_chunks(db, broker, viewer, session.id, chunks, clock_slack=slack)
    finally:
        await broker.close()


async def test_a_coach_unassigned_after_the_check_stores_nothing(
    db: Database, factory: Factory
) -> None:
    session = await live_session(factory)
    coach = Viewer(role=Role.COACH, coach_id=session.coach_id)
    with pytest.raises(PermissionDenied):
        await record(db, coach, session)
    assert await stored(db, session.id) == (0, 0)


@pytest.mark.parametrize("who", ["athlete", "admin"])
async def test_the_athlete_and_admins_still_write_after_the_unassignment(
    db: Database, factory: Factory, who: str
) -> None:
    session = await live_session(factory)
    viewer = (
        Viewer(role=Role.ATHLETE, athlete_id=session.athlete_id)
        if who == "athlete"
        else Viewer(role=Role.ADMIN)
    )
    done = await record(db, viewer, session)
    assert (done.first_seq, done.count) == (1, 8)
    assert await stored(db, session.id) == (8, 8)


async def test_the_coachs_write_holds_the_relationship_until_commit(
    db: Database, factory: Factory
) -> None:
    session = await live_session(factory)
    link = "SELECT 1 FROM coach_athletes WHERE coach_id = $1 AND athlete_id = $2 FOR UPDATE NOWAIT"
    async with db.transaction() as conn:
        await metrics.append(conn, session_id=session.id, samples=batch(2), by_its_coach=True)
        with pytest.raises(asyncpg.LockNotAvailableError):  # an unassignment would wait
            async with db.transaction() as other:
                await other.fetchval(link, session.coach_id, session.athlete_id)
    async with db.transaction() as other:  # committed: released
        assert await other.fetchval(link, session.coach_id, session.athlete_id) == 1
    assert await stored(db, session.id) == (2, 2)
