"""The broker contract, against the in-process broker, Redis Streams and PostgreSQL."""

from __future__ import annotations

import asyncio

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
