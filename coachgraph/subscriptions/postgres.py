"""PostgreSQL broker: LISTEN/NOTIFY between the worker processes of one `serve --workers N`
(or any replicas sharing a database), without Redis.

Nothing large travels through NOTIFY (its payload is capped at 8,000 bytes). A message is sent
inline when it is small (a status, an end, a graph change); a message with a stand-in (a batch
of samples: `Wakeups`) is sent as a wake-up naming its topic and cursors, and the receiving
process reads the rows from the table subscribers already resume from (metric_samples), once
for all its subscribers of that topic, and hands them the same message the in-process broker
would. A message too large for NOTIFY and without a stand-in is sent as a RESYNC of its topic.

Postgres is the source of truth, so a lost notification costs delay, never data: a publish
that fails tells this process's subscribers of the topic to resync; when the LISTEN connection
is lost, it is re-opened with capped exponential backoff and every local subscriber is told to
resync, so each reads what it missed from Postgres (sessionMetrics: after its last cursor).

Each process has one LISTEN connection and one reader task; notifications are handled in the
order Postgres delivers them (commit order). A subscription is live from a marker: subscribe
NOTIFYs a marker of this process, and messages reach the subscriber only once the marker (or a
later one) has come back, so nothing committed before `subscribe` was called is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from coachgraph.errors import Unavailable
from coachgraph.retry import Backoff
from coachgraph.subscriptions.broker import RESYNC, Fanout, Message, SubscriberQueue

log = logging.getLogger(__name__)
CHANNEL = "coachgraph_broker"
STORE = "broker"
MAX_PAYLOAD = 7_900  # bytes: NOTIFY refuses 8,000 and more
READ_BATCH = 1_000  # notifications handed out together (their wake-ups read in one statement)
_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class Wakeups(Protocol):
    """Stand-ins for large messages: `shrink` makes the wake-up a publish sends (None: send
    the message itself); `expand` reads back the messages of many wake-ups at once, in their
    order, where they are received (None for one whose rows are gone: its topic's subscribers
    are told to resync)."""

    def shrink(self, topic: str, message: Message) -> Message | None: ...

    async def expand(self, wakes: list[tuple[str, Message]]) -> list[Message | None]: ...


class SampleWakeups:
    """A session's batch of samples travels as its first and last cursor; each receiving
    process reads the batches of every wake-up that has arrived meanwhile from metric_samples
    in one statement, once for all its subscribers."""

    def __init__(self) -> None:
        self.pool: Any = None  # set by the broker once it has connected
        self.reads = 0  # statements that read batches back (tests and benchmarks)

    def shrink(self, topic: str, message: Message) -> Message | None:
        rows = message.get("samples")
        if not (topic.startswith("session:") and isinstance(rows, list) and rows):
            return None
        return {"first": rows[0][0], "last": rows[-1][0]}

    async def expand(self, wakes: list[tuple[str, Message]]) -> list[Message | None]:
        sessions = [int(topic.split(":")[1]) for topic, _ in wakes]
        firsts = [int(wake["first"]) for _, wake in wakes]
        lasts = [int(wake["last"]) for _, wake in wakes]
        self.reads += 1
        rows = await self.pool.fetch(
            "SELECT w.n, m.seq, m.kind::text AS kind, m.at, m.value "
            "FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) "
            "WITH ORDINALITY AS w(session_id, first, last, n) "
            "JOIN metric_samples m ON m.session_id = w.session_id "
            "AND m.seq BETWEEN w.first AND w.last ORDER BY w.n, m.seq",
            sessions,
            firsts,
            lasts,
        )
        found: list[list[list[Any]]] = [[] for _ in wakes]
        for row in rows:
            found[row["n"] - 1].append(
                [row["seq"], row["kind"], (row["at"] - _EPOCH) // _MICROSECOND, row["value"]]
            )
        return [
            {"samples": batch} if len(batch) == last - first + 1 else None
            for batch, first, last in zip(found, firsts, lasts, strict=True)
        ]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class PostgresBroker:
    """NOTIFY per message on one channel; one LISTEN connection and reader task per process."""

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        pool: Any = None,
        wakeups: Wakeups | None = None,
        timeout: float = 2.0,
        retry: Backoff | None = None,
    ) -> None:
        self._dsn = dsn
        self._pool = pool  # the app's pool (publishes); a small one of its own without it
        self._own_pool = pool is None
        self.wakeups = wakeups or SampleWakeups()
        self._timeout = timeout
        self.retry = retry or Backoff(0.1, 5.0)
        self.fanout = Fanout()
        self._me = f"{os.getpid()}.{id(self)}"
        self._marks = itertools.count(1)
        self._seen = 0  # the newest of our markers that has come back
        self._inbox: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        self._conn: asyncpg.Connection | None = None
        self._listener: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._publish_failing = False
        self.reconnects = 0  # times the LISTEN connection was found again after losing it

    async def start(self) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=4)
        if isinstance(self.wakeups, SampleWakeups) and self.wakeups.pool is None:
            self.wakeups.pool = self._pool
        await self._listen()
        self._listener = asyncio.create_task(self._keep_listening(), name="pg-broker-listen")
        self._reader = asyncio.create_task(self._read(), name="pg-broker-reader")

    async def close(self) -> None:
        for task in (self._listener, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._listener = self._reader = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(*_ERRORS):
                await asyncio.wait_for(conn.close(), self._timeout)
            if not conn.is_closed():
                conn.terminate()
        if self._own_pool and self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            raise Unavailable(STORE)
        try:
            # through the pool: healthz may ask twice at once, and a connection runs one query
            await asyncio.wait_for(self._pool.fetchval("SELECT 1"), self._timeout)
        except _ERRORS as err:
            raise Unavailable(STORE) from err

    async def publish(self, topic: str, message: Message) -> None:
        """NOTIFY the message, its wake-up, or (too large) a resync of its topic; when
        Postgres cannot take it, log, let local subscribers resync, and return."""
        wake = self.wakeups.shrink(topic, message)
        payload = json.dumps(
            {"t": topic, "w": wake} if wake is not None else {"t": topic, "m": message}
        )
        if len(payload.encode()) > MAX_PAYLOAD:
            payload = json.dumps({"t": topic, "r": 1})
        try:
            await asyncio.wait_for(self._notify(payload), self._timeout)
        except _ERRORS as err:
            if not self._publish_failing:
                log.warning(
                    "Postgres broker publish failed (%s: %s); subscribers will catch up",
                    type(err).__name__,
                    err,
                )
            self._publish_failing = True
            self.fanout.deliver(topic, RESYNC)
            return
        if self._publish_failing:
            log.info("Postgres broker publish works again")
            self._publish_failing = False

    async def _notify(self, payload: str) -> None:
        await self._pool.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    async def subscribe(self, topic: str, *, queue_size: int) -> SubscriberQueue:
        """Messages committed after this call: the subscriber is live once a marker sent now
        comes back (with the LISTEN connection down, at once: the reconnect resyncs it)."""
        mark = next(self._marks)
        sub = self.fanout.add(topic, queue_size)
        sub.since = (mark, 0)
        try:
            await asyncio.wait_for(
                self._notify(json.dumps({"k": self._me, "n": mark})), self._timeout
            )
        except _ERRORS:
            self._seen = max(self._seen, mark)  # no marker will come: live now, resync later
            sub.offer(RESYNC)
        return sub

    async def forget(self, topics: set[str]) -> int:
        """Nothing to remove: NOTIFY retains nothing, and the samples a wake-up points at are
        read from metric_samples, which erasure empties itself."""
        return 0

    async def lag(self) -> float:
        """How long the oldest notification received and not yet handed out has waited."""
        if self._conn is None or self._conn.is_closed():
            raise Unavailable(STORE)
        if self._inbox.empty():
            return 0.0
        oldest = float(self._inbox._queue[0][0])  # type: ignore[attr-defined]
        return max(0.0, time.monotonic() - oldest)

    # ------------------------------------------------------------------ listening

    async def _listen(self) -> None:
        conn = await asyncio.wait_for(asyncpg.connect(self._dsn), self._timeout)
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._connection_lost)
        self._conn = conn
        self._lost.clear()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._inbox.put_nowait((time.monotonic(), payload))

    def _connection_lost(self, *_: object) -> None:
        self._lost.set()

    async def _keep_listening(self) -> None:
        """Re-open a lost LISTEN connection with backoff; then every local subscriber resyncs
        (what was published meanwhile reached nobody here)."""
        while True:
            await self._lost.wait()
            if self._conn is not None:
                self._conn.terminate()
                self._conn = None
            log.warning("Postgres broker: LISTEN connection lost; reconnecting")
            while True:
                await asyncio.sleep(self.retry.next())
                try:
                    await self._listen()
                except _ERRORS as err:
                    if self.retry.failures == 1:
                        log.warning("Postgres broker: reconnect failed (%s); retrying", err)
                    continue
                break
            self.retry.reset()
            self.reconnects += 1
            self._seen = next(self._marks)  # pending markers may be lost: every subscriber is live
            log.info("Postgres broker listening again; subscribers re-read what they missed")
            self.fanout.resync()

    async def _read(self) -> None:
        """Hand out what has arrived, in order: everything waiting is taken at once, and the
        wake-ups among it are read back in one statement."""
        while True:
            batch = [await self._inbox.get()]
            while not self._inbox.empty() and len(batch) < READ_BATCH:
                batch.append(self._inbox.get_nowait())
            try:
                await self._hand_out([payload for _, payload in batch])
            except asyncio.CancelledError:
                raise
            except Exception:  # keep reading: a bad batch must not end every subscription
                log.exception("Postgres broker: could not hand out %d notifications", len(batch))
                self.fanout.resync()

    async def _hand_out(self, payloads: list[str]) -> None:
        topics = self.fanout.topics
        notes: list[dict[str, Any]] = []
        wakes: list[tuple[str, Message]] = []
        for payload in payloads:
            try:
                note = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(note, dict):
                continue
            topic = note.get("t")
            if "k" not in note and not isinstance(topic, str):
                continue  # not ours
            if isinstance(topic, str) and topic not in topics:
                continue  # read and decode only what someone here listens to
            if "w" in note:
                note["i"] = len(wakes)
                wakes.append((note["t"], note["w"]))
            notes.append(note)
        expanded: list[Message | None] = [None] * len(wakes)
        if wakes:
            try:
                expanded = await self.wakeups.expand(wakes)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # Postgres down, or wake-ups this code cannot read
                log.warning("Postgres broker: could not read %d wake-ups (%s)", len(wakes), err)
        for note in notes:
            if "k" in note:
                if note["k"] == self._me:
                    self._seen = max(self._seen, int(note["n"]))
                continue
            subs = topics.get(note["t"])
            if not subs:
                continue
            message = expanded[note["i"]] if "w" in note else note.get("m")
            if not isinstance(message, dict):
                message = RESYNC
            seen = self._seen
            for sub in list(subs):
                if sub.since[0] <= seen:
                    sub.offer(message)
