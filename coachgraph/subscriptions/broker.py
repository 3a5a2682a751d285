"""The broker: topics of live events, fanned out to bounded per-subscriber queues."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

Message = dict[str, Any]

# A control message, not an event: "events of this topic may have been lost (the broker was
# unreachable); read what you need from Postgres". Consumers that re-read state on any message
# (session status, matches) need nothing more; sessionMetrics reads back after its last cursor.
RESYNC: Message = {"resync": True}


def is_resync(message: Message) -> bool:
    return message.get("resync") is True


class Overflow(Exception):
    """The subscriber's queue filled up: it fell behind and must resume from storage."""


class SubscriberQueue:
    """One subscriber's bounded queue. Publishing never waits on it: a full queue ends it."""

    def __init__(self, topic: str, size: int, release: Callable[[SubscriberQueue], None]) -> None:
        self.topic = topic
        self.since: tuple[int, int] = (0, 0)  # a backend's own position: deliver what is newer
        self.overflowed = False
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=size)
        self._release = release
        self._closed = False

    def offer(self, message: Message) -> None:
        """Called by the broker for each message; never blocks."""
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True

    async def get(self) -> Message:
        """The next message; Overflow once the queue has overflowed (what is queued is dropped:
        the subscriber resumes from its last delivered cursor, so nothing is lost)."""
        if self.overflowed:
            raise Overflow(self.topic)
        message = await self._queue.get()
        if self.overflowed:
            raise Overflow(self.topic)
        return message

    def drain(self) -> list[Message]:
        """Whatever is queued, at once, without waiting; Overflow once the queue has
        overflowed."""
        if self.overflowed:
            raise Overflow(self.topic)
        queued = []
        while not self._queue.empty():
            queued.append(self._queue.get_nowait())
        return queued

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release(self)


class Fanout:
    """Local subscribers by topic: what both backends deliver to, in this process."""

    def __init__(self) -> None:
        self.topics: dict[str, set[SubscriberQueue]] = {}

    def add(self, topic: str, size: int) -> SubscriberQueue:
        sub = SubscriberQueue(topic, size, self.remove)
        self.topics.setdefault(topic, set()).add(sub)
        return sub

    def remove(self, sub: SubscriberQueue) -> None:
        subs = self.topics.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.topics[sub.topic]

    def deliver(self, topic: str, message: Message) -> None:
        for sub in self.topics.get(topic, ()):
            sub.offer(message)

    def resync(self) -> None:
        """Tell every local subscriber that events may have been lost."""
        for subs in list(self.topics.values()):
            for sub in list(subs):
                sub.offer(RESYNC)


class Broker(Protocol):
    """Publish after commit; subscribe with a bounded queue. Delivery is at most once per
    subscriber: consumers that need every event resume from Postgres (see resolvers/live)."""

    name: str
    fanout: Fanout  # this process's subscribers

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise `Unavailable` when the broker does not answer (healthz)."""
        ...

    async def publish(self, topic: str, message: Message) -> None:
        """Best effort, after the commit it announces: never raises for an unreachable broker
        (the write stands; subscribers are told to resync and read it from Postgres)."""
        ...

    async def subscribe(self, topic: str, *, queue_size: int) -> SubscriberQueue:
        """Messages published to `topic` from now on, until the subscription is closed."""
        ...

    async def lag(self) -> float:
        """Seconds between the newest message published and the newest this process handed
        to its subscribers (metrics); 0 when it has caught up."""
        ...

    async def forget(self, topics: set[str]) -> int:
        """Remove every retained message of `topics` (erasure); return how many went."""
        ...


class MemoryBroker:
    """In-process fan-out: one API process (the embedded default)."""

    name = "memory"

    def __init__(self) -> None:
        self.fanout = Fanout()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def publish(self, topic: str, message: Message) -> None:
        self.fanout.deliver(topic, message)

    async def subscribe(self, topic: str, *, queue_size: int) -> SubscriberQueue:
        return self.fanout.add(topic, queue_size)

    async def lag(self) -> float:
        return 0.0  # delivered as it is published

    async def forget(self, topics: set[str]) -> int:
        return 0  # nothing is retained: delivered as published
