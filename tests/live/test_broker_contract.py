"""The broker contract, against the in-process broker, Redis Streams and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coachgraph.subscriptions.broker import Broker, Overflow


async def next_message(sub: object, wait: float = 5) -> dict[str, object]:
    return await asyncio.wait_for(sub.get(), wait)  # type: ignore[attr-defined, no-any-return]


async def test_delivers_in_order_to_every_subscriber_of_the_topic(broker: Broker) -> None:
    a = await broker.subscribe("t:1", queue_size=100)
    b = await broker.subscribe("t:1", queue_size=100)
    other = await broker.subscribe("t:2", queue_size=100)
    for i in range(20):
        await broker.publish("t:1", {"n": i})
    assert [(await next_message(a))["n"] for _ in range(20)] == list(range(20))
    assert [(await next_message(b))["n"] for _ in range(20)] == list(range(20))
    await broker.publish("t:2", {"n": "other"})
    assert (await next_message(other))["n"] == "other"  # nothing of t:1 came first
    for sub in (a, b, other):
        sub.close()


async def test_only_messages_after_subscribing(broker: Broker) -> None:
    await broker.publish("t:old", {"n": "before"})
    sub = await broker.subscribe("t:old", queue_size=10)
    await broker.publish("t:old", {"n": "after"})
    assert (await next_message(sub))["n"] == "after"
    sub.close()


async def test_closed_subscription_receives_nothing(broker: Broker) -> None:
    kept = await broker.subscribe("t:c", queue_size=10)
    gone = await broker.subscribe("t:c", queue_size=10)
    gone.close()
    await broker.publish("t:c", {"n": 1})
    assert (await next_message(kept))["n"] == 1
    with pytest.raises(asyncio.TimeoutError):
        await next_message(gone, wait=0.3)
    kept.close()


async def test_a_full_queue_ends_that_subscriber_only(broker: Broker) -> None:
    slow = await broker.subscribe("t:s", queue_size=5)
    fast = await broker.subscribe("t:s", queue_size=1_000)
    received = []
    for i in range(50):
        await broker.publish("t:s", {"n": i})  # never waits on the slow one
        received.append((await next_message(fast))["n"])
    assert received == list(range(50))
    assert slow.overflowed
    with pytest.raises(Overflow):
        await slow.get()
    slow.close()
    fast.close()


async def test_a_message_arrives_equal(broker: Broker) -> None:
    """What a subscriber gets equals what was published, whatever carries it: text beyond
    ASCII, floats, nesting, and an integer beyond 64 bits (which orjson refuses to write)."""
    sub = await broker.subscribe("t:e", queue_size=10)
    sent = [
        {"n": 1, "text": "Zoë 🏃", "value": 142.25, "items": [{"a": None, "b": [True, False]}]},
        {"n": 2, "big": 2**70, "negative": -(2**63)},
    ]
    for message in sent:
        await broker.publish("t:e", message)
    assert [await next_message(sub) for _ in sent] == sent
    sub.close()


async def test_concurrent_publishes_arrive_once_in_order(broker: Broker) -> None:
    """Many publishers in the same turn of the event loop (the Redis broker writes them in one
    pipeline): each topic's messages arrive once, in the order each publisher sent them, and
    a publisher cancelled on the way loses nothing of the others'."""
    topics = [f"t:p{i}" for i in range(10)]
    subs = {t: await broker.subscribe(t, queue_size=100) for t in topics}

    async def publisher(topic: str) -> None:
        for n in range(20):
            await broker.publish(topic, {"n": n})

    cancelled = asyncio.ensure_future(broker.publish("t:gone", {"n": 0}))
    tasks = [asyncio.ensure_future(publisher(t)) for t in topics]
    cancelled.cancel()
    await asyncio.gather(*tasks)
    for topic, sub in subs.items():
        assert [(await next_message(sub))["n"] for _ in range(20)] == list(range(20)), topic
        sub.close()


async def test_the_redis_reader_lingers_after_a_read_it_did_not_fill(redis_url: str) -> None:
    """Publishes a few milliseconds apart: without a linger the reader makes a round trip per
    entry; with one, each XREAD takes what the linger brought. Every message arrives, once, in
    order, either way."""
    from coachgraph.subscriptions.redis import RedisBroker

    reads: dict[int, int] = {}
    for linger in (0, 40):
        broker = RedisBroker(redis_url, stream=f"test:linger:{linger}", read_linger_ms=linger)
        await broker.start()
        try:
            client = broker._reader_conn
            real = client.xread
            reads[linger] = 0

            async def counted(
                *args: object, _linger: int = linger, _real: Any = real, **kwargs: object
            ) -> object:
                reads[_linger] += 1
                return await _real(*args, **kwargs)

            client.xread = counted
            sub = await broker.subscribe("t:linger", queue_size=100)
            for n in range(30):
                await broker.publish("t:linger", {"n": n})
                await asyncio.sleep(0.004)
            assert [(await next_message(sub))["n"] for _ in range(30)] == list(range(30))
        finally:
            await broker.close()
    assert reads[40] * 2 < reads[0], reads


async def test_the_redis_broker_writes_one_batch_at_a_time(redis_url: str) -> None:
    """Publishes that come while a batch is being written wait for the next batch: one write
    (and one connection) in flight however many publishers there are, batches written in the
    order they formed, so each topic's messages arrive in order."""
    from coachgraph.subscriptions.redis import RedisBroker

    broker = RedisBroker(redis_url, stream="test:one-write")
    await broker.start()
    try:
        client = broker._redis
        real = client.pipeline
        in_flight, most, writes = 0, 0, 0

        class Counted:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self.pipe = real(*args, **kwargs)

            async def __aenter__(self) -> Any:
                nonlocal in_flight, most, writes
                in_flight += 1
                writes += 1
                most = max(most, in_flight)
                return await self.pipe.__aenter__()

            async def __aexit__(self, *exc: Any) -> None:
                nonlocal in_flight
                in_flight -= 1
                await self.pipe.__aexit__(*exc)

        client.pipeline = Counted
        topics = [f"t:w{i}" for i in range(50)]
        subs = {t: await broker.subscribe(t, queue_size=100) for t in topics}

        async def publisher(k: int, topic: str) -> None:
            for n in range(10):
                await asyncio.sleep((k % 7) / 1000)
                await broker.publish(topic, {"n": n})

        await asyncio.gather(*(publisher(k, t) for k, t in enumerate(topics)))
        for topic, sub in subs.items():
            assert [(await next_message(sub))["n"] for _ in range(10)] == list(range(10)), topic
        assert most == 1
        assert writes < 500  # publishes joined batches
    finally:
        await broker.close()
