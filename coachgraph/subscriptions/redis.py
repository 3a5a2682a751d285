"""Redis Streams broker: any API replica publishes, every replica fans out to its subscribers.

All topics share one stream. Each replica's reader task takes it in bulk (up to
`Limits.redis_read_count` entries per XREAD, 1,000 by default) and hands each entry to the local
subscribers of its topic, if any. After a read that found entries but did not fill it, the
reader lingers (`Limits.redis_read_linger_ms`) before reading again: under a steady stream of
publishes each XREAD then takes what a few milliseconds brought, not one entry a round trip. One XREAD of one key serves every subscriber of the process,
where a stream per topic would make each read name every topic with a subscriber (measured:
1,000 topics held a core at 23 % delivery).

Redis is not the source of truth, so its outages cost liveness, never data: a publish that
fails is logged and dropped (the write it announces is committed in Postgres) and the local
subscribers of that topic are told to resync; the reader retries with capped exponential
backoff and, once Redis answers again, tells every local subscriber to resync, so each reads
what it missed from Postgres (sessionMetrics: after its last cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from coachgraph.errors import Unavailable
from coachgraph.retry import Backoff
from coachgraph.subscriptions.broker import RESYNC, Fanout, Message, SubscriberQueue

log = logging.getLogger(__name__)
STREAM = "coachgraph:events"
STORE = "broker"

# Redis is down, restarting, or not answering
_REDIS_ERRORS: tuple[type[BaseException], ...] = (
    aioredis.ConnectionError,
    aioredis.TimeoutError,
    OSError,
    TimeoutError,
)
# a publish also gives up on any error Redis answers (a batch holds many publishes)
_PUBLISH_ERRORS: tuple[type[BaseException], ...] = (*_REDIS_ERRORS, aioredis.RedisError)


class RedisBroker:
    """XADD per message to one stream; one reader task per process XREADs it and fans out."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        max_length: int = 100_000,
        stream: str = STREAM,
        timeout: float = 2.0,
        retry: Backoff | None = None,
        read_block_ms: int = 1_000,
        read_count: int = 1_000,
        read_linger_ms: int = 0,
    ) -> None:
        self._url = url
        self._max_length = max_length  # entries kept: history lives in Postgres, not here
        self._stream = stream
        self._timeout = timeout  # per command (publish, subscribe, ping) and per connect
        self.retry = retry or Backoff(0.1, 5.0)  # the reader's reconnect schedule
        self._read_block_ms = read_block_ms  # how long one XREAD waits for entries
        self._read_count = read_count  # the most entries one XREAD takes
        # after a read that did not fill `read_count`: wait this long before the next one, so
        # that under a steady stream of publishes one XREAD takes many entries, not one each
        self._read_linger = read_linger_ms / 1000
        self.fanout = Fanout()
        self._redis: Any = None
        self._reader_conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._position = (0, 0)  # the last stream entry the reader handed out
        self._publish_failing = False
        # the publishes not yet written: those of this turn of the event loop, and of every
        # turn while the batch before them is being written (one write in flight at a time)
        self._forming: _Batch | None = None
        self._writing = asyncio.Lock()
        self._flushing: set[asyncio.Task[None]] = set()
        self.reconnects = 0  # times the reader found Redis again after losing it

    def _client(self, socket_timeout: float) -> Any:
        # one immediate retry: a pooled connection to a restarted Redis fails once, then the
        # pool reconnects; longer outages are this module's business, not the client's
        return aioredis.from_url(
            self._url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 1),
        )

    async def start(self) -> None:
        self._redis = self._client(self._timeout)
        self._reader_conn = self._client(self._read_block_ms / 1000 + self._timeout)
        await self._redis.ping()
        last = await self._redis.xrevrange(self._stream, count=1)
        position = last[0][0].decode() if last else "0-0"
        self._position = _stream_id(last[0][0]) if last else (0, 0)
        self._task = asyncio.create_task(self._read(position), name="redis-broker-reader")

    async def close(self) -> None:
        if self._flushing:  # what was published is written before the client closes
            await asyncio.gather(*self._flushing, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for client in (self._reader_conn, self._redis):
            if client is not None:
                with contextlib.suppress(*_REDIS_ERRORS):
                    await client.aclose()

    async def ping(self) -> None:
        try:
            await asyncio.wait_for(self._redis.ping(), self._timeout)
        except _REDIS_ERRORS as err:
            raise Unavailable(STORE) from err

    async def publish(self, topic: str, message: Message) -> None:
        """XADD, pipelined with the other publishes of the same turn of the event loop, and of
        every turn while the batch before is being written (one round trip for all of them: a
        third of the CPU of one XADD each, measured; and one connection, however fast the
        publishes come), returning once its batch is written. When Redis cannot take it: log,
        let the local subscribers of its topics resync, and return: the write it announces is
        committed, and Postgres is where subscribers find it."""
        batch = self._forming
        if batch is None:
            batch = self._forming = _Batch(asyncio.get_running_loop().create_future())
            # starts after the publishers already woken this turn, so they join this batch
            task = asyncio.create_task(self._flush(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)
        batch.entries.append((topic, _fields(topic, message)))
        await asyncio.shield(batch.sent)  # a publisher's cancellation leaves the batch be

    async def _flush(self, batch: _Batch) -> None:
        try:
            async with self._writing:  # batches are written in the order they formed
                if self._forming is batch:
                    self._forming = None  # from now on a publish starts the next batch
                async with self._redis.pipeline(transaction=False) as pipe:
                    for _topic, fields in batch.entries:
                        pipe.xadd(self._stream, fields, maxlen=self._max_length, approximate=True)
                    await pipe.execute()
        except _PUBLISH_ERRORS as err:
            if not self._publish_failing:
                log.warning(
                    "Redis publish failed (%s: %s); subscribers will catch up from Postgres",
                    type(err).__name__,
                    err,
                )
            self._publish_failing = True
            for topic in dict.fromkeys(topic for topic, _fields in batch.entries):
                self.fanout.deliver(topic, RESYNC)
            return
        finally:
            if not batch.sent.done():
                batch.sent.set_result(None)
        if self._publish_failing:
            log.info("Redis publish works again")
            self._publish_failing = False

    async def subscribe(self, topic: str, *, queue_size: int) -> SubscriberQueue:
        """Entries after the stream's end as of now (the reader may still be behind it); with
        Redis unreachable, after what the reader has handed out so far."""
        try:
            last = await self._redis.xrevrange(self._stream, count=1)
            since = _stream_id(last[0][0]) if last else (0, 0)
        except _REDIS_ERRORS:
            since = self._position
        sub = self.fanout.add(topic, queue_size)
        sub.since = since
        return sub

    async def forget(self, topics: set[str]) -> int:
        """XDEL the stream entries of `topics`, read through in pages of `read_count`."""
        removed = 0
        start = "-"
        while True:
            page = await self._redis.xrange(self._stream, min=start, count=self._read_count)
            doomed = [i for i, fields in page if fields.get(b"t", b"").decode() in topics]
            if doomed:
                removed += await self._redis.xdel(self._stream, *doomed)
            if len(page) < self._read_count:
                return removed
            start = "(" + page[-1][0].decode()

    async def lag(self) -> float:
        """The newest stream entry's time less that of the last one the reader handed out
        (stream ids are milliseconds); Unavailable when Redis does not answer."""
        try:
            last = await asyncio.wait_for(
                self._redis.xrevrange(self._stream, count=1), self._timeout
            )
        except _REDIS_ERRORS as err:
            raise Unavailable(STORE) from err
        if not last:
            return 0.0
        newest = _stream_id(last[0][0])
        return max(0, newest[0] - self._position[0]) / 1000

    async def _read(self, position: str | bytes) -> None:
        topics = self.fanout.topics
        while True:
            try:
                if self.retry.failing:
                    position = await self._resume_from(position)
                found = await self._reader_conn.xread(
                    {self._stream: position}, block=self._read_block_ms, count=self._read_count
                )
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as err:
                delay = self.retry.next()
                if self.retry.failures == 1:
                    log.warning(
                        "Redis read failed (%s: %s); retrying with backoff",
                        type(err).__name__,
                        err,
                    )
                await asyncio.sleep(delay)
                continue
            if self.retry.failing:
                self.retry.reset()
                self.reconnects += 1
                log.info("Redis reachable again; subscribers re-read what they missed")
                self.fanout.resync()
            taken = 0
            for _stream, entries in found:
                taken += len(entries)
                for entry_id, fields in entries:
                    position = entry_id
                    at = _stream_id(entry_id)
                    self._position = at
                    subs = topics.get(fields[b"t"].decode())
                    if not subs:
                        continue  # decode only what someone here listens to
                    raw = fields.get(b"m")
                    message = orjson.loads(raw) if raw is not None else json.loads(fields[b"j"])
                    for sub in list(subs):
                        if at > sub.since:
                            sub.offer(message)
            if taken and taken < self._read_count and self._read_linger:
                await asyncio.sleep(self._read_linger)

    async def _resume_from(self, position: str | bytes) -> str | bytes:
        """Where to read on after an outage: from the same entry if the stream still holds
        it, else (Redis restarted empty, or trimmed) from the start of what is there now."""
        last = await self._reader_conn.xrevrange(self._stream, count=1)
        if not last:
            return "0-0"
        current = position.encode() if isinstance(position, str) else position
        if _stream_id(last[0][0]) < _stream_id(current):
            return "0-0"
        return position


class _Batch:
    """Stream entries published in one turn of the event loop, written together."""

    __slots__ = ("entries", "sent")

    def __init__(self, sent: asyncio.Future[None]) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.sent = sent


def _fields(topic: str, message: Message) -> dict[str, Any]:
    """A stream entry: the message as orjson writes it (an order of magnitude faster than json
    on these small messages) under `m`; what orjson refuses (an integer beyond 64 bits, which
    its reader would also turn into a float) as json under `j`."""
    try:
        return {"t": topic, "m": orjson.dumps(message)}
    except TypeError:
        return {"t": topic, "j": json.dumps(message)}


def _stream_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq)
