"""Live events that end or stay quiet: sessionMetrics completes when its session ends, and
matchUpdates recomputes only for graph changes that concern its athlete, once per burst.

Driven at the resolver level with each broker (memory, Redis); test_subscriptions.py runs
the same over WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coachgraph.config import Settings
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.projector import Projector
from coachgraph.graph.recommend import Match
from coachgraph.resolvers import live
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import Role, Viewer
from coachgraph.runtime import Resources, announcer, collab_vectors
from coachgraph.stores import athletes, metrics, sessions
from coachgraph.stores.db import Database
from coachgraph.stores.metrics import Sample
from coachgraph.stores.records import SessionRecord
from coachgraph.subscriptions.broker import RESYNC, Broker, Message
from coachgraph.subscriptions.topics import (
    EVERYTHING,
    GRAPH_TOPIC,
    GraphChange,
    graph_changed,
    metrics_topic,
)
from tests.factories import Factory
from tests.live.conftest import live_session
from tests.servers import until

ADMIN = Viewer(role=Role.ADMIN)
WAIT = 20.0  # generous: every wait here is for something that happens at once


def _batch(n: int, kind: str = "HEART_RATE") -> list[tuple[str, datetime, float]]:
    now = datetime.now(UTC) - timedelta(seconds=1)
    return [(kind, now + timedelta(microseconds=i), 60.0 + i) for i in range(n)]


async def _record(
    db: Database, broker: Broker, session_id: int, n: int, settings: Settings
) -> None:
    """Stored and published, as recordMetrics does."""
    await live.record(db, broker, ADMIN, session_id, _batch(n), settings.limits)


async def _store_unannounced(db: Database, session_id: int, n: int) -> list[Message]:
    """Committed, but its broker message not (yet) published: returns that message."""
    batch = _batch(n)
    async with db.transaction() as conn:
        first = await metrics.append(conn, session_id=session_id, samples=batch)
    return [live.samples_message(first, batch)]


async def _end(db: Database, session_id: int) -> SessionRecord:
    async with db.transaction() as conn:
        return await sessions.transition(conn, session_id=session_id, to="COMPLETED")


def _stream(
    db: Database,
    broker: Broker,
    session_id: int,
    settings: Settings,
    *,
    after: int | None,
    kinds: list[str] | None = None,
) -> AsyncIterator[Sample]:
    return live.sample_stream(
        db, broker, session_id=session_id, kinds=kinds, after=after, limits=settings.limits
    )


async def _drain(stream: AsyncIterator[Sample], seen: list[int]) -> None:
    """Every sample until the stream ends by itself."""
    async for sample in stream:
        seen.append(sample.seq)


async def _subscribed(broker: Broker, topic: str) -> None:
    await until(lambda: topic in broker.fanout.topics, f"a subscriber of {topic}")  # type: ignore[attr-defined]


# ---------------------------------------------------------------- sessionMetrics ends


async def test_metrics_end_after_every_sample_even_those_the_broker_brings_late(
    db: Database, factory: Factory, broker: Broker, settings: Settings
) -> None:
    session = await live_session(factory)
    seen: list[int] = []
    task = asyncio.create_task(_drain(_stream(db, broker, session.id, settings, after=0), seen))
    await _subscribed(broker, metrics_topic(session.id))
    await _record(db, broker, session.id, 10, settings)
    await until(lambda: len(seen) == 10, "the first batch, live")
    for _ in range(4):
        await _record(db, broker, session.id, 10, settings)
    # committed just before the end, announced only after it: the end is seen first
    late = await _store_unannounced(db, session.id, 10)
    await live.announce_status(broker, await _end(db, session.id))
    for message in late:
        await broker.publish(metrics_topic(session.id), message)
    await asyncio.wait_for(task, WAIT)  # ended by itself
    assert seen == list(range(1, 61))


async def test_metrics_end_when_a_resync_finds_the_session_ended(
    db: Database, factory: Factory, broker: Broker, settings: Settings
) -> None:
    """The end's message lost (Redis was unreachable): the resync that follows reads the
    status, then what is stored, and completes."""
    session = await live_session(factory)
    seen: list[int] = []
    task = asyncio.create_task(_drain(_stream(db, broker, session.id, settings, after=0), seen))
    await _subscribed(broker, metrics_topic(session.id))
    await _record(db, broker, session.id, 5, settings)
    await until(lambda: len(seen) == 5, "the first batch, live")
    await _store_unannounced(db, session.id, 7)
    await _end(db, session.id)  # and nothing published
    broker.fanout.resync()  # type: ignore[attr-defined]
    await asyncio.wait_for(task, WAIT)
    assert seen == list(range(1, 13))


async def test_metrics_of_an_ended_session_are_what_is_stored_after_the_cursor(
    db: Database, factory: Factory, broker: Broker, settings: Settings
) -> None:
    session = await live_session(factory)
    for kind in ("HEART_RATE", "POWER", "HEART_RATE"):
        await live.record(db, broker, ADMIN, session.id, _batch(10, kind), settings.limits)
    await live.announce_status(broker, await _end(db, session.id))

    async def read(after: int | None, kinds: list[str] | None = None) -> list[int]:
        seen: list[int] = []
        stream = _stream(db, broker, session.id, settings, after=after, kinds=kinds)
        await asyncio.wait_for(_drain(stream, seen), WAIT)
        return seen

    assert await read(None) == []  # live only: nothing comes after the end
    assert await read(0) == list(range(1, 31))
    assert await read(25) == list(range(26, 31))  # resumed after the end
    assert await read(5, ["POWER"]) == list(range(11, 21))
    assert await read(30) == []


async def test_metrics_of_a_scheduled_session_wait_for_it_to_go_live(
    db: Database, factory: Factory, broker: Broker, settings: Settings
) -> None:
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    scheduled = await factory.session(coach.id, athlete.id)
    seen: list[int] = []
    task = asyncio.create_task(
        _drain(_stream(db, broker, scheduled.id, settings, after=None), seen)
    )
    await _subscribed(broker, metrics_topic(scheduled.id))
    async with db.transaction() as conn:
        started = await sessions.transition(conn, session_id=scheduled.id, to="LIVE")
    await live.announce_status(broker, started)
    await _record(db, broker, scheduled.id, 4, settings)
    await until(lambda: len(seen) == 4, "samples once the session is live")
    assert not task.done()
    await live.announce_status(broker, await _end(db, scheduled.id))
    await asyncio.wait_for(task, WAIT)
    assert seen == [1, 2, 3, 4]


# ---------------------------------------------------------------- matchUpdates


@dataclasses.dataclass
class Matching:
    ctx: Context
    projector: Projector
    stats: live.MatchRecomputes

    async def apply(self) -> None:
        """Each call its own batch, announced on the broker."""
        await self.projector.catch_up()


@pytest.fixture
async def matching(
    db: Database, broker: Broker, app_resources: tuple[Any, Resources], settings: Settings
) -> Matching:
    """A graph of its own whose projector announces on `broker`, and a context over both."""
    limits = dataclasses.replace(settings.limits, match_update_coalesce_ms=300)
    projector = Projector(
        db,
        MemoryGraph(),
        name="test:match-updates",
        sinks=[collab_vectors(settings, db)],  # the learned signal moves with the graph
        listeners=[announcer(broker, max_ids=limits.graph_change_max_ids)],
    )
    await projector.prepare()
    resources = app_resources[1]
    ctx = Context(
        settings.with_(limits=limits),
        db,
        ADMIN,
        projector.graph,
        resources.media,
        broker,
        resources.search,
    )
    return Matching(ctx, projector, live.MatchRecomputes())


async def _set_goals(db: Database, athlete_id: int, skill_ids: list[int]) -> None:
    async with db.transaction() as conn:
        await athletes.set_goals(conn, athlete_id=athlete_id, skill_ids=skill_ids)


def _ranked(matches: list[Match]) -> list[int]:
    return [m.id for m in matches]


@contextlib.asynccontextmanager
async def _following(
    matching: Matching, athlete_id: int, *, coalesce_ms: int | None = None
) -> AsyncIterator[list[list[Match]]]:
    """A matchUpdates subscription read in the background: the lists it has yielded so far."""
    if coalesce_ms is not None:
        limits = dataclasses.replace(
            matching.ctx.settings.limits, match_update_coalesce_ms=coalesce_ms
        )
        matching.ctx.settings = matching.ctx.settings.with_(limits=limits)
    feed = live.coach_match_updates(matching.ctx, athlete_id, 5, stats=matching.stats)
    lists: list[list[Match]] = []

    async def read() -> None:
        async for matches in feed:
            lists.append(matches)

    reader = asyncio.create_task(read())
    try:
        await until(lambda: lists, "the first list")
        yield lists
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await feed.aclose()


async def test_match_updates_skip_batches_that_cannot_change_the_matches(
    db: Database, factory: Factory, matching: Matching
) -> None:
    skill, other = await factory.skill(), await factory.skill()
    athlete = await factory.athlete(looking_for_coach=True)
    await _set_goals(db, athlete.id, [skill.id])
    candidate = await factory.coach()
    await factory.teach(candidate.id, skill.id, level=3)
    teammate = await factory.athlete()  # coached by the candidate
    await factory.assign(candidate.id, teammate.id)
    cyclist = await factory.athlete(sport="cycling")  # coached by a coach it never sees
    elsewhere = await factory.coach(sports=["cycling"])
    await factory.assign(elsewhere.id, cyclist.id)
    loner = await factory.athlete()  # coached by nobody
    await matching.apply()
    stats = matching.stats

    async with _following(matching, athlete.id) as lists:
        first = lists[0]
        assert _ranked(first) == [candidate.id]
        await _set_goals(db, cyclist.id, [skill.id])  # its coach is no candidate
        await matching.apply()
        await _set_goals(db, loner.id, [skill.id])  # nobody coaches it
        await matching.apply()
        await factory.skill()  # skills are not scored
        await matching.apply()
        await factory.session(candidate.id, teammate.id)  # not in the graph: not announced
        await matching.apply()
        await until(lambda: stats.skipped == 3, "three announcements read")
        assert stats.count == 0 and len(lists) == 1

        # a teammate of the athlete's candidate now wants the same goal: a similar athlete
        await _set_goals(db, teammate.id, [skill.id])
        await matching.apply()
        await until(lambda: len(lists) == 2, "a new list")
        updated = lists[1]
        assert _ranked(updated) == [candidate.id] and updated[0].score > first[0].score
        assert updated[0].reasons.similar_athletes == 1
        assert (stats.count, stats.skipped) == (1, 3)

        # the athlete itself, and any coach, concern it
        await _set_goals(db, athlete.id, [skill.id, other.id])
        await matching.apply()
        await until(lambda: stats.count == 2, "a recompute for the athlete's own change")
        newcomer = await factory.coach(sports=["cycling"])
        await factory.teach(newcomer.id, other.id)
        await matching.apply()
        await until(lambda: stats.count == 3, "a recompute for a coach's change")
        # and a resync (events may have been lost) always does
        matching.ctx.broker.fanout.resync()  # type: ignore[attr-defined]
        await until(lambda: stats.count == 4, "a recompute after a resync")
        assert stats.skipped == 3


async def test_match_updates_recompute_once_for_a_burst_of_batches(
    db: Database, factory: Factory, matching: Matching
) -> None:
    skill = await factory.skill()
    athlete = await factory.athlete(looking_for_coach=True)
    await _set_goals(db, athlete.id, [skill.id])
    coach = await factory.coach()
    await factory.teach(coach.id, skill.id, level=1)
    await matching.apply()
    stats = matching.stats

    async with _following(matching, athlete.id, coalesce_ms=1_000) as lists:
        # each write its own batch and its own announcement, as fast as they come
        bursts = 20
        for i in range(bursts):
            await factory.teach(coach.id, skill.id, level=1 + (i + 2) % 5)  # ends at 2
            await matching.apply()
        better = await factory.coach()
        await factory.teach(better.id, skill.id, level=5)
        await matching.apply()
        await until(lambda: _ranked(lists[-1]) == [better.id, coach.id], "the last list")
        assert lists[-1][1].score > lists[0][0].score  # the coach teaches at level 2 now
        assert 1 <= stats.count < bursts // 4

        # announcements published in one go: one recompute
        before = stats.count
        message = graph_changed({"coach": [coach.id]}, coached_by=[], max_ids=10)
        for _ in range(50):
            await matching.ctx.broker.publish(GRAPH_TOPIC, message)
        await until(lambda: stats.count > before, "a recompute")
        assert stats.count - before < 5


# ---------------------------------------------------------------- the announcement's rule


def test_announcements_name_what_changed_up_to_a_cap() -> None:
    message = graph_changed(
        {"athlete": {3, 1}, "coach": set(), "skill": {9}}, coached_by=[7, 7, 5], max_ids=6
    )
    assert message == {"changed": {"athlete": [1, 3], "skill": [9]}, "coached_by": [5, 7]}
    assert graph_changed({"athlete": set(range(7))}, coached_by=[], max_ids=6) == EVERYTHING
    change = GraphChange.read(message)
    assert (change.everything, change.athletes, change.coached_by) == (
        False,
        frozenset({1, 3}),
        frozenset({5, 7}),
    )
    for everything in (EVERYTHING, RESYNC, {"changed": {"athlete": [1]}}):  # last: old shape
        assert GraphChange.read(everything).everything


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"changed": {"athlete": [1]}, "coached_by": []}, True),  # the athlete itself
        ({"changed": {"coach": [99]}, "coached_by": []}, True),  # any coach
        ({"changed": {"athlete": [2]}, "coached_by": [10]}, True),  # a candidate's athlete
        ({"changed": {"athlete": [2]}, "coached_by": [11]}, False),  # another coach's athlete
        ({"changed": {"athlete": [2]}, "coached_by": []}, False),  # nobody's athlete
        ({"changed": {"skill": [5], "program": [6]}, "coached_by": []}, False),
        (EVERYTHING, True),
        (RESYNC, True),
    ],
)
def test_which_changes_concern_a_subscriber(message: dict[str, Any], expected: bool) -> None:
    candidates = frozenset({10, 12})
    assert live.concerns(GraphChange.read(message), 1, candidates) is expected
