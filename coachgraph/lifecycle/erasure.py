"""eraseAthlete: the athlete's rows go in one transaction (with an outbox event and a row
listing what else is to go); then each store outside Postgres is emptied of it and marked
done. A crash anywhere leaves that row pending, and `resume` (at start, then periodically)
finishes it: every step is idempotent."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass, field

from coachgraph.graph.projector import Projector
from coachgraph.media.model import MediaStore
from coachgraph.search.model import SearchIndex
from coachgraph.stores import erasure as store
from coachgraph.stores.db import Database
from coachgraph.stores.graph_source import Position
from coachgraph.subscriptions.broker import Broker
from coachgraph.subscriptions.topics import metrics_topic, status_topic

log = logging.getLogger(__name__)

TOPICS = [metrics_topic(0).replace("0", "{}", 1), status_topic(0).replace("0", "{}", 1)]


def subject_of(key: str, type_name: str, raw_id: int) -> str:
    """The opaque id audit rows know a record by: a keyed hash, not reversible to the id."""
    digest = hmac.new(key.encode(), f"{type_name}:{raw_id}".encode(), hashlib.sha256)
    return "s_" + digest.hexdigest()[:32]


class ErasedAthletes:
    """Athletes erased, whose tokens are refused: read from Postgres at start and on every
    refresh (other replicas' erasures), added to at once for this process's own."""

    def __init__(self) -> None:
        self.ids: set[int] = set()

    def __contains__(self, athlete_id: object) -> bool:
        return athlete_id in self.ids

    async def refresh(self, db: Database) -> None:
        rows = await db.pool.fetch("SELECT athlete_id FROM erasures")
        self.ids |= {r[0] for r in rows}


@dataclass
class Stores:
    """Every store an athlete may be in, besides Postgres."""

    db: Database
    media: MediaStore
    broker: Broker
    search: SearchIndex
    projector: Projector | None  # None: graph and search follow when a projector runs
    key: str  # audit subjects
    erased: ErasedAthletes = field(default_factory=ErasedAthletes)
    catch_up_seconds: float = 10.0
    # tests: raise after the named store was emptied, as a crash there would stop the work
    crash_after: str | None = None

    def names(self) -> dict[str, str]:
        graph = self.projector.graph.name if self.projector else "graph"
        return {
            "graph": f"graph:{graph}",
            "search": f"search:{self.search.name}",
            "media": f"media:{self.media.name}",
            "broker": f"broker:{self.broker.name}",
        }


class CrashInjected(RuntimeError):
    """Raised by `Stores.crash_after` (tests)."""


async def erase(stores: Stores, *, athlete_id: int) -> store.Erasure:
    """Remove the athlete from the records, then from every other store."""
    subject = subject_of(stores.key, "Athlete", athlete_id)
    async with stores.db.transaction() as conn:
        erased = await store.erase_records(
            conn, athlete_id=athlete_id, subject=subject, topics_of=TOPICS
        )
    stores.erased.ids.add(athlete_id)
    if stores.crash_after == "postgres":
        raise CrashInjected("postgres")
    return await complete(stores, erased)


async def complete(stores: Stores, erased: store.Erasure) -> store.Erasure:
    """Empty each store outside Postgres of the erased athlete, marking each done; finished
    when all are (graph and search wait for the projector)."""
    names = stores.names()
    done = set(erased.stores)
    projected = [n for n in (names["graph"], names["search"]) if n not in done]
    if projected and await _projected(stores, erased):
        for name in projected:  # the projector applies an event to both before moving on
            await _mark(stores, erased, name, done)
    if names["media"] not in done:
        for key in erased.media_keys:
            await stores.media.delete(key=key)
        await _mark(stores, erased, names["media"], done)
    if names["broker"] not in done:
        await stores.broker.forget(set(erased.topics))
        await _mark(stores, erased, names["broker"], done)
    async with stores.db.transaction() as conn:
        if done >= set(names.values()):
            return await store.finish(conn, erasure_id=erased.id)
        return await store.get(conn, erasure_id=erased.id)


async def _mark(stores: Stores, erased: store.Erasure, name: str, done: set[str]) -> None:
    async with stores.db.transaction() as conn:
        await store.mark_done(conn, erasure_id=erased.id, store=name)
    done.add(name)
    if stores.crash_after == name:
        raise CrashInjected(name)


async def _projected(stores: Stores, erased: store.Erasure) -> bool:
    """Whether the projector applied the erasure's outbox event (it is made to catch up)."""
    if stores.projector is None:
        return False
    row = await stores.db.pool.fetchrow(
        "SELECT txid::text AS txid, id FROM outbox WHERE aggregate = 'athlete' "
        "AND aggregate_id = $1 AND event = 'athlete.erased' ORDER BY id DESC LIMIT 1",
        erased.athlete_id,
    )
    if row is None:  # the outbox was pruned: long applied
        return True
    event = Position(int(row["txid"]), row["id"])
    deadline = asyncio.get_running_loop().time() + stores.catch_up_seconds
    while True:
        await stores.projector.catch_up()
        if stores.projector.position >= event:
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False  # a transaction still open holds it back; resume finishes it
        await asyncio.sleep(0.05)


async def resume(stores: Stores, *, batch: int = 100) -> int:
    """Finish erasures a crash (or an outage) left pending; return how many were finished."""
    await stores.erased.refresh(stores.db)
    async with stores.db.pool.acquire() as conn:
        found = await store.pending(conn, limit=batch)
    finished = 0
    for erased in found:
        if (await complete(stores, erased)).finished_at is not None:
            finished += 1
    return finished


async def resume_periodically(stores: Stores, *, interval_seconds: float) -> None:
    """The background job: other replicas' erasures learnt, pending ones finished."""
    while True:
        try:
            await resume(stores)
        except Exception:  # the job must outlive a passing store fault
            log.exception("finishing erasures failed; trying again later")
        await asyncio.sleep(interval_seconds)
