"""Redis Streams broker: any API replica publishes, every replica fans out to its subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import redis.asyncio as aioredis

from coachgraph.subscriptions.broker import Fanout, Message, Subscription

log = logging.getLogger(__name__)
BLOCK_MS = 100  # a newly subscribed topic joins the read within this long
STREAM_TTL_SECONDS = 6 * 3600  # idle topics (ended sessions) leave Redis on their own


class RedisBroker:
    """XADD per message; one reader task per process XREADs every topic it has subscribers for."""

    name = "redis"

    def __init__(self, url: str, *, max_length: int = 10_000) -> None:
        self._url = url
        self._max_length = max_length
        self.fanout = Fanout()
        self._positions: dict[str, str] = {}  # topic -> last stream id read
        self._wake = asyncio.Event()
        self._redis: Any = None
        self._reader_conn: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._redis = aioredis.from_url(self._url)
        self._reader_conn = aioredis.from_url(self._url, socket_timeout=None)
        await self._redis.ping()
        self._task = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in (self._reader_conn, self._redis):
            if client is not None:
                await client.aclose()

    async def publish(self, topic: str, message: Message) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(topic, {"m": json.dumps(message)}, maxlen=self._max_length, approximate=True)
            pipe.expire(topic, STREAM_TTL_SECONDS)
            await pipe.execute()

    async def subscribe(self, topic: str, *, queue_size: int) -> Subscription:
        if topic not in self._positions:
            # read from the stream's current end: everything published from now on arrives
            last = await self._redis.xrevrange(topic, count=1)
            self._positions[topic] = last[0][0].decode() if last else "0-0"
            self._wake.set()
        sub = self.fanout.add(topic, queue_size)
        return sub

    async def _read(self) -> None:
        while True:
            for topic in [t for t in self._positions if t not in self.fanout.topics]:
                del self._positions[topic]  # no subscriber left here
            if not self._positions:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                found = await self._reader_conn.xread(
                    dict(self._positions), block=BLOCK_MS, count=1_000
                )
            except (aioredis.ConnectionError, aioredis.TimeoutError):
                log.warning("Redis read failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            for stream, entries in found:
                topic = stream.decode()
                for entry_id, fields in entries:
                    if topic in self._positions:
                        self._positions[topic] = entry_id.decode()
                    self.fanout.deliver(topic, json.loads(fields[b"m"]))
