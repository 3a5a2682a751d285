"""Live sessions: validated ingestion, published after commit, and gap-free sample streams."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from coachgraph.config import Limits
from coachgraph.errors import Conflict, InvalidInput, NotFound, SlowConsumer
from coachgraph.graph.recommend import Match
from coachgraph.ids import decode_cursor, encode_cursor
from coachgraph.resolvers import matching, queries
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.loaders import Loaders
from coachgraph.resolvers.policy import (
    SessionFacts,
    Viewer,
    can_write_session_data,
    missing,
    require,
)
from coachgraph.stores import metrics, uploads
from coachgraph.stores.db import Database
from coachgraph.stores.metrics import Sample
from coachgraph.stores.records import SessionRecord
from coachgraph.subscriptions.broker import Broker, Message, Overflow, is_resync
from coachgraph.subscriptions.topics import GRAPH_TOPIC as GRAPH_TOPIC
from coachgraph.subscriptions.topics import (
    GraphChange,
    ended_message,
    is_ended,
    metrics_topic,
)
from coachgraph.subscriptions.topics import status_topic as status_topic

# bpm, W, rpm, m/s, ms
RANGES: dict[str, tuple[float, float]] = {
    "HEART_RATE": (20, 250),
    "POWER": (0, 2500),
    "CADENCE": (0, 250),
    "SPEED": (0, 40),
    "HRV": (1, 300),
}
RawSample = tuple[str, datetime, float]


class BadSample(InvalidInput):
    """The first offending sample of a batch: its index (or NDJSON line) and why."""

    def __init__(self, index: int, message: str, *, where: str = "samples") -> None:
        label = f"line {index + 1}" if where == "line" else f"samples[{index}]"
        super().__init__(f"{label}: {message}", field=label, code="INVALID_SAMPLE")
        self.index = index


def check_samples(
    samples: Iterable[RawSample],
    *,
    started_at: datetime,
    now: datetime,
    clock_slack: timedelta,
    where: str = "samples",
    first_index: int = 0,
    window: str = "the live session (start - 5 s .. now + 5 s)",
) -> list[RawSample]:
    """Every sample in range and in the session's time, from `started_at` to `now` (its end,
    for a completed session; `window` says which in a refusal), give or take `clock_slack`;
    the first offender refuses the batch."""
    earliest, latest = started_at - clock_slack, now + clock_slack
    checked = []
    for i, (kind, at, value) in enumerate(samples, start=first_index):
        low_high = RANGES.get(kind)
        if low_high is None:
            raise BadSample(i, f"unknown kind {kind!r}", where=where)
        if at.tzinfo is None:
            raise BadSample(i, "`at` needs a time zone offset", where=where)
        if not earliest <= at <= latest:
            raise BadSample(i, f"`at` is outside {window}", where=where)
        if not (isinstance(value, int | float) and math.isfinite(value)):
            raise BadSample(i, "`value` must be a finite number", where=where)
        low, high = low_high
        if not low <= value <= high:
            raise BadSample(i, f"{kind} must be between {low:g} and {high:g}", where=where)
        checked.append((kind, at, float(value)))
    return checked


async def writable_live_session(
    db: Database, viewer: Viewer, session_id: int, *, completed_too: bool = False
) -> metrics.LiveSession:
    """The session, if the viewer may write its samples and it is LIVE (or, with
    `completed_too`, COMPLETED: a wearable's file comes after the ride)."""
    message = "You may not write samples of this session"
    try:
        found = await metrics.live_session(db.pool, session_id=session_id)
    except NotFound:
        raise missing(viewer, "TrainingSession", session_id, message) from None
    facts = SessionFacts(found.coach_id, found.athlete_id, found.coached)
    require(can_write_session_data(viewer, facts), message)
    takes = ("LIVE", "COMPLETED") if completed_too else ("LIVE",)
    if found.status not in takes or found.started_at is None:
        raise Conflict(f"A {found.status} session takes no samples")
    return found


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a write stored: `count` samples with cursors from `first_seq` on; `skipped`: a
    file's samples the session already held; `replayed`: these bytes were uploaded before,
    and this is that upload's answer (nothing was stored this time)."""

    first_seq: int
    count: int
    skipped: int = 0
    replayed: bool = False

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


async def record(
    db: Database,
    broker: Broker,
    viewer: Viewer,
    session_id: int,
    samples: list[RawSample],
    limits: Limits,
) -> Recorded:
    """Validate a whole batch, store it with one COPY, then publish it; all or nothing."""
    cap = limits.max_samples_per_batch
    if not 1 <= len(samples) <= cap:
        raise InvalidInput(f"Send 1 to {cap} samples", field="samples", code="OUT_OF_RANGE")
    return await record_chunks(
        db,
        broker,
        viewer,
        session_id,
        _one(samples),
        clock_slack=clock_slack(limits),
        where="samples",
    )


def clock_slack(limits: Limits) -> timedelta:
    """How far a sample's time may lie before its session's start or after now."""
    return timedelta(milliseconds=limits.sample_clock_slack_ms)


async def _one(samples: list[RawSample]) -> AsyncIterator[list[RawSample]]:
    yield samples


async def record_chunks(
    db: Database,
    broker: Broker,
    viewer: Viewer,
    session_id: int,
    chunks: AsyncIterator[list[RawSample]],
    *,
    clock_slack: timedelta,
    where: str = "line",
    digest: Callable[[], bytes] | None = None,
) -> Recorded:
    """Each chunk is checked, then COPied while the next one is read and parsed (Postgres
    and Python each busy on a core). One transaction: a bad sample anywhere rolls every chunk
    back, and nothing is published before the commit (then one message per chunk).

    `digest`: the SHA-256 of the NDJSON body,
    called once every chunk is read; the upload is recorded under it in the same transaction,
    and a body uploaded before rolls this one back and gets that upload's answer, `replayed`."""
    session = await writable_live_session(db, viewer, session_id)
    assert session.started_at is not None
    # a coach writes only while it coaches the athlete: checked again, and held, by the write
    by_its_coach = viewer.is_coach(session.coach_id)
    written: list[tuple[int, list[RawSample]]] = []  # (first cursor, samples) per chunk
    seen = 0  # samples checked so far: the index of the next one
    replay = _Replay()  # outside the transaction: a replay rolls it back, then is answered
    async with replay, db.transaction() as conn:
        copying: tuple[asyncio.Future[int], list[RawSample]] | None = None
        try:
            async for chunk in chunks:
                checked = check_in_session(
                    chunk,
                    started_at=session.started_at,
                    ended_at=None,  # LIVE: samples up to now
                    clock_slack=clock_slack,
                    where=where,
                    first_index=seen,
                )
                seen += len(chunk)
                if copying is not None:
                    written.append((await copying[0], copying[1]))
                copy = metrics.append(
                    conn,
                    session_id=session_id,
                    samples=checked,
                    by_its_coach=by_its_coach,
                )
                copying = (asyncio.ensure_future(copy), checked)
            if copying is not None:
                written.append((await copying[0], copying[1]))
                copying = None
        finally:
            if copying is not None:  # refused mid-stream: the connection must be idle to roll back
                await asyncio.gather(copying[0], return_exceptions=True)
        if not written:
            raise InvalidInput("Send at least one sample", field="body", code="OUT_OF_RANGE")
        if digest is not None:
            upload = uploads.Upload("NDJSON", written[0][0], seen, 0)
            replay.found = await uploads.claim(
                conn, session_id=session_id, digest=digest(), upload=upload
            )
            if replay.found is not None:
                raise replay
    if replay.found is not None:
        return replayed(replay.found)
    for first, checked in written:
        await broker.publish(metrics_topic(session_id), samples_message(first, checked))
    return Recorded(written[0][0], seen)


class _Replay(Exception):
    """Raised inside the transaction when its body was uploaded before (`found`), to roll it
    back; as the context around the transaction, it then keeps the exception from going on."""

    found: uploads.Upload | None = None

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is _Replay


def replayed(upload: uploads.Upload) -> Recorded:
    """The answer an earlier upload of the same bytes got."""
    return Recorded(upload.first_seq, upload.accepted, upload.skipped, replayed=True)


def check_in_session(
    samples: Iterable[RawSample],
    *,
    started_at: datetime,
    ended_at: datetime | None,
    clock_slack: timedelta,
    where: str,
    first_index: int = 0,
) -> list[RawSample]:
    """check_samples against the session's window: from its start to now while it is live, to
    its end once it has completed (`ended_at`), give or take `clock_slack`."""
    slack = _seconds(clock_slack)
    window = (
        f"the session (start - {slack} .. end + {slack})"
        if ended_at is not None
        else f"the live session (start - {slack} .. now + {slack})"
    )
    return check_samples(
        samples,
        started_at=started_at,
        now=ended_at or datetime.now(UTC),
        clock_slack=clock_slack,
        where=where,
        first_index=first_index,
        window=window,
    )


def _seconds(span: timedelta) -> str:
    return f"{span.total_seconds():g} s"


def samples_message(first_seq: int, samples: list[RawSample]) -> Message:
    """One broker message per batch; times as integer microseconds (exact through JSON)."""
    return {
        "samples": [
            [first_seq + i, kind, (at - _EPOCH) // _MICROSECOND, value]
            for i, (kind, at, value) in enumerate(samples)
        ]
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _from_message(row: list[object]) -> Sample:
    seq, kind, micros, value = row
    return Sample(int(seq), str(kind), _EPOCH + timedelta(microseconds=int(micros)), float(value))  # type: ignore[call-overload, arg-type]


async def sample_stream(
    db: Database,
    broker: Broker,
    *,
    session_id: int,
    kinds: list[str] | None,
    after: int | None,
    limits: Limits,
) -> AsyncGenerator[Sample, None]:
    """Stored samples after `after`, then the live tail: each sample once, in cursor order,
    until the session ends.

    The live subscription opens first, so nothing published meanwhile is missed; whatever the
    broker skipped (a gap in the cursors) is read back from Postgres, the source of truth, and
    so is everything after the last cursor when the broker says it may have lost events
    (Redis was unreachable: publishes failed, or the reader reconnected). Without `after`,
    the stream starts after the last sample committed when it opened.

    Once the session has ended (it was already, or its end is announced, or a resync finds it
    so) no sample commits any more: what is stored after the last cursor is read back, whatever
    the broker still carries is ignored, and the stream returns.
    """
    sub = await broker.subscribe(metrics_topic(session_id), queue_size=limits.subscriber_queue)
    wanted = set(kinds) if kinds else None
    try:
        now = await metrics.progress(db.pool, session_id=session_id)
        last = after if after is not None else now.last_seq
        if after is not None:
            async for sample in _stored(db, session_id, kinds, last, None, limits):
                last = sample.seq
                yield sample
        if now.ended:
            return  # read after the end: the storage read above was complete
        while True:
            try:
                message = await sub.get()
            except Overflow:
                raise SlowConsumer(encode_cursor(last)) from None
            if "samples" not in message:
                # the end (published after its commit) or events may be lost (look): read the
                # status before the samples, so that an ended session's read is complete
                ended = is_ended(message) or (
                    is_resync(message)
                    and (await metrics.progress(db.pool, session_id=session_id)).ended
                )
                async for sample in _stored(db, session_id, kinds, last, None, limits):
                    last = sample.seq
                    yield sample
                if ended:
                    return
                continue
            batch = [_from_message(r) for r in message["samples"]]
            if batch[0].seq > last + 1:  # the broker skipped something: read it back
                async for sample in _stored(db, session_id, kinds, last, batch[0].seq, limits):
                    last = sample.seq
                    yield sample
                last = max(last, batch[0].seq - 1)
            for sample in batch:
                if sample.seq <= last:
                    continue  # already delivered from storage
                last = sample.seq
                if wanted is None or sample.kind in wanted:
                    yield sample
    finally:
        sub.close()


async def _stored(
    db: Database,
    session_id: int,
    kinds: list[str] | None,
    after: int,
    before: int | None,
    limits: Limits,
) -> AsyncIterator[Sample]:
    page = limits.max_sample_page
    while True:
        rows = await metrics.after(
            db.pool,
            session_id=session_id,
            after_seq=after,
            kinds=kinds,
            limit=page,
            before_seq=before,
        )
        for row in rows:
            yield row
        if len(rows) < page:
            return
        after = rows[-1].seq


# ---------------------------------------------------------------- subscriptions


def _fresh_loaders(ctx: Context) -> None:
    """A long-lived subscription must not serve rows cached at its start."""
    ctx.loaders = Loaders(ctx.db, ctx.viewer)


async def session_samples(
    ctx: Context, session_id: int, *, kinds: list[str] | None, after: str | None
) -> AsyncGenerator[Sample, None]:
    """sessionMetrics: who may read the session may read its samples, after `after` (a
    cursor) from storage, then live."""
    await queries.session(ctx, session_id)
    cursor = decode_cursor(after) if after is not None else None
    stream = sample_stream(
        ctx.db,
        ctx.broker,
        session_id=session_id,
        kinds=kinds,
        after=cursor,
        limits=ctx.settings.limits,
    )
    async with contextlib.aclosing(stream):
        async for sample in stream:
            yield sample


async def announce_status(broker: Broker, session: SessionRecord) -> None:
    """After a status change commits: sessionUpdates subscribers re-read the session, and once
    it has ended, sessionMetrics subscribers read their last samples and complete."""
    await broker.publish(status_topic(session.id), {"status": session.status})
    if session.status in metrics.ENDED:
        await broker.publish(metrics_topic(session.id), ended_message(session.status))


async def session_updates(ctx: Context, session_id: int) -> AsyncGenerator[SessionRecord, None]:
    """sessionUpdates: the session each time its status changes, until it has ended (its last
    status delivered, the subscription completes; one that starts after the end gets the
    session once and completes); a subscriber that falls behind is dropped (SlowConsumer)."""
    queue_size = ctx.settings.limits.subscriber_queue
    # subscribed before the read (which applies the policy), so no change falls between them
    sub = await ctx.broker.subscribe(status_topic(session_id), queue_size=queue_size)
    try:
        session = await queries.session(ctx, session_id)
        if session.status in metrics.ENDED:
            yield session
            return
        while True:
            try:
                await sub.get()
            except Overflow:
                raise SlowConsumer(None) from None
            _fresh_loaders(ctx)
            session = await queries.session(ctx, session_id)
            yield session
            if session.status in metrics.ENDED:
                return
    finally:
        sub.close()


@dataclass
class MatchRecomputes:
    """What matchUpdates subscriptions did with the graph changes announced after their first
    list: `count` recomputes, and `skipped` announcements that could not concern them (tests
    and benchmarks read it)."""

    count: int = 0
    skipped: int = 0


MATCH_RECOMPUTES = MatchRecomputes()  # every matchUpdates subscription of this process


def concerns(change: GraphChange, athlete_id: int, candidates: frozenset[int]) -> bool:
    """Whether an applied graph batch could change the athlete's coach matches, given the
    candidate coaches its last ranking weighed.

    The rule follows what `rank_coaches` (graph/recommend.py) reads from the neighbourhood a
    backend returns, and what decides who is in it:
    * the athlete itself (sport, city, level, skills, goals, its coaches): when it changed;
    * every coach's record (sports, city, capacity, current load) and what it teaches: these
      decide who is a candidate at all (hard constraints, then the cut to the best
      `match_candidates` by pre-score) and each one's coverage, fit and city, so a changed
      coach concerns every subscriber;
    * the goals of the athletes a candidate coaches (the similar-athletes signal and its
      Adamic-Adar weights): a changed athlete concerns the subscribers whose candidates
      include one of its coaches. Its coaching links cannot change without naming the coach
      (an assignment's event carries the coach's id), so its coaches now are all that could
      carry its change; and the set of candidates cannot change unless a coach or the athlete
      itself does, so the set from the last ranking still holds for a batch that touches
      neither;
    * skills and programs: nothing of theirs is read (prerequisites, DEVELOPS, LEADS and
      enrolments are not in the neighbourhood); a removed record is announced as everything.
    A resync, an overflow, a rebuild or an over-long batch concern everybody.
    The learned similarity (graph/collab.py) is not covered whole: a candidate's vector moves
    with its athletes (covered above), but also with the enrollments in the programs it leads
    and, for the nearest-coach candidates, with any coach's vector; those moves wait for the
    next batch that concerns the subscriber (an approximation, not a wrong answer: the list is
    re-ranked from current vectors then).
    """
    if change.everything or change.coaches or athlete_id in change.athletes:
        return True
    return not candidates.isdisjoint(change.coached_by)


async def coach_match_updates(
    ctx: Context, athlete_id: int, first: int | None, *, stats: MatchRecomputes | None = None
) -> AsyncGenerator[list[Match], None]:
    """matchUpdates: the athlete's coach matches at once, then again whenever the graph
    changes them (ids or scores).

    Only a batch that `concerns` the athlete starts a recompute; it then waits
    `match_update_coalesce_ms` and drops whatever else has arrived (and what queued up while
    the last recompute ran): the one recompute reads the graph after all of them. `stats`
    (besides MATCH_RECOMPUTES) counts what this subscription did."""
    tallies = (MATCH_RECOMPUTES,) if stats is None else (MATCH_RECOMPUTES, stats)
    limits = ctx.settings.limits
    window = limits.match_update_coalesce_ms / 1000
    # subscribe before the first computation: a change in between is not missed
    sub = await ctx.broker.subscribe(GRAPH_TOPIC, queue_size=limits.subscriber_queue)
    try:
        matches, candidates = await matching.match_coaches_among(ctx, athlete_id, first)
        shown = _signature(matches)
        yield matches
        while True:
            try:
                while not concerns(GraphChange.read(await sub.get()), athlete_id, candidates):
                    for tally in tallies:
                        tally.skipped += 1
                if window:
                    await asyncio.sleep(window)
                sub.drain()
            except Overflow:  # changes are idempotent: recompute, start a new queue
                sub.close()
                sub = await ctx.broker.subscribe(GRAPH_TOPIC, queue_size=limits.subscriber_queue)
            _fresh_loaders(ctx)
            matches, candidates = await matching.match_coaches_among(ctx, athlete_id, first)
            for tally in tallies:
                tally.count += 1
            if _signature(matches) != shown:
                shown = _signature(matches)
                yield matches
    finally:
        sub.close()


def _signature(matches: list[Match]) -> list[tuple[int, float]]:
    return [(m.id, round(m.score, 6)) for m in matches]
