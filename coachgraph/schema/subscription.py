"""The Subscription root of API.md: live samples, session status, and match changes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from functools import lru_cache

import strawberry

from coachgraph.ids import decode_id
from coachgraph.resolvers import live
from coachgraph.stores.metrics import Sample

from .info import Info
from .live import MetricKind, MetricSample
from .matching import CoachMatch, present_coach_matches
from .types import TrainingSession


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Samples after `after` from storage, then live: no gap, no duplicate."
    )
    async def session_metrics(
        self,
        info: Info,
        session_id: strawberry.ID,
        kinds: list[MetricKind] | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[MetricSample, None]:
        raw_id = decode_id(session_id, "TrainingSession", field="sessionId")
        stream = live.session_samples(
            info.context, raw_id, kinds=[k.value for k in kinds] if kinds else None, after=after
        )
        async with contextlib.aclosing(stream):
            async for sample in stream:
                yield _event(sample)

    @strawberry.subscription(description="The session, each time its status changes.")
    async def session_updates(
        self, info: Info, session_id: strawberry.ID
    ) -> AsyncGenerator[TrainingSession, None]:
        raw_id = decode_id(session_id, "TrainingSession", field="sessionId")
        stream = live.session_updates(info.context, raw_id)
        async with contextlib.aclosing(stream):
            async for session in stream:
                yield TrainingSession.from_record(session)

    @strawberry.subscription(
        description="The athlete's coach matches at once, then a new list whenever they change."
    )
    async def match_updates(
        self, info: Info, athlete_id: strawberry.ID, first: int | None = 10
    ) -> AsyncGenerator[list[CoachMatch], None]:
        raw_id = decode_id(athlete_id, "Athlete", field="athleteId")
        stream = live.coach_match_updates(info.context, raw_id, first)
        async with contextlib.aclosing(stream):
            async for matches in stream:
                yield await present_coach_matches(info, matches)


@lru_cache(maxsize=4_096)
def _event(sample: Sample) -> MetricSample:
    """One MetricSample object per sample for all its watchers (samples are equal by value):
    the engine then executes each event once for all of them, and the WebSocket adapter
    encodes it once (coachgraph.engine: Engine.event)."""
    return MetricSample.from_sample(sample)
