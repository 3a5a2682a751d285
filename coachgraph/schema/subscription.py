"""The Subscription root of API.md: live samples, session status, and match changes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import strawberry

from coachgraph.errors import SlowConsumer
from coachgraph.ids import decode_cursor, decode_id
from coachgraph.resolvers import live, queries
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.loaders import Loaders
from coachgraph.subscriptions.broker import Overflow

from .live import MetricKind, MetricSample
from .matching import CoachMatch, coach_matches
from .types import Info, TrainingSession


def fresh_loaders(ctx: Context) -> None:
    """A long-lived subscription must not serve rows cached at its start."""
    ctx.loaders = Loaders(ctx.db, ctx.viewer)


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
        ctx = info.context
        raw_id = decode_id(session_id, "TrainingSession", field="sessionId")
        await queries.session(ctx, raw_id)  # who may read the session may read its samples
        cursor = decode_cursor(after) if after is not None else None
        stream = live.sample_stream(
            ctx.db,
            ctx.broker,
            session_id=raw_id,
            kinds=[k.value for k in kinds] if kinds else None,
            after=cursor,
            limits=ctx.settings.limits,
        )
        async with contextlib.aclosing(stream):
            async for sample in stream:
                yield MetricSample.from_sample(sample)

    @strawberry.subscription(description="The session, each time its status changes.")
    async def session_updates(
        self, info: Info, session_id: strawberry.ID
    ) -> AsyncGenerator[TrainingSession, None]:
        ctx = info.context
        raw_id = decode_id(session_id, "TrainingSession", field="sessionId")
        await queries.session(ctx, raw_id)
        limits = ctx.settings.limits
        sub = await ctx.broker.subscribe(
            live.status_topic(raw_id), queue_size=limits.subscriber_queue
        )
        try:
            while True:
                try:
                    await sub.get()
                except Overflow:
                    raise SlowConsumer(None) from None
                fresh_loaders(ctx)
                yield TrainingSession.from_record(await queries.session(ctx, raw_id))
        finally:
            sub.close()

    @strawberry.subscription(
        description="The athlete's coach matches at once, then a new list whenever they change."
    )
    async def match_updates(
        self, info: Info, athlete_id: strawberry.ID, first: int | None = 10
    ) -> AsyncGenerator[list[CoachMatch], None]:
        ctx = info.context
        raw_id = decode_id(athlete_id, "Athlete", field="athleteId")
        limits = ctx.settings.limits
        # subscribe before the first computation: a change in between is not missed
        sub = await ctx.broker.subscribe(live.GRAPH_TOPIC, queue_size=limits.subscriber_queue)
        try:
            matches = await coach_matches(info, raw_id, first)
            shown = _signature(matches)
            yield matches
            while True:
                try:
                    await sub.get()
                except Overflow:  # changes are idempotent: recompute, start a new queue
                    sub.close()
                    sub = await ctx.broker.subscribe(
                        live.GRAPH_TOPIC, queue_size=limits.subscriber_queue
                    )
                fresh_loaders(ctx)
                matches = await coach_matches(info, raw_id, first)
                if _signature(matches) != shown:
                    shown = _signature(matches)
                    yield matches
        finally:
            sub.close()


def _signature(matches: list[CoachMatch]) -> list[tuple[str, float]]:
    return [(str(m.coach.id), round(m.score, 6)) for m in matches]
