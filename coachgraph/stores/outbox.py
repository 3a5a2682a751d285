"""The outbox: one event per change, written in the transaction of the change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coachgraph.stores.sql import Executor


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    aggregate: str
    aggregate_id: int
    event: str
    payload: dict[str, Any]
    created_at: datetime


async def append(
    conn: Executor, *, aggregate: str, aggregate_id: int, event: str, payload: dict[str, Any]
) -> int:
    """Record that `aggregate`/`aggregate_id` changed; call inside the change's transaction."""
    event_id: int = await conn.fetchval(
        "INSERT INTO outbox (aggregate, aggregate_id, event, payload) "
        "VALUES ($1, $2, $3, $4) RETURNING id",
        aggregate,
        aggregate_id,
        event,
        payload,
    )
    return event_id


async def read_after(conn: Executor, *, after_id: int, limit: int) -> list[OutboxEvent]:
    """Events with id above `after_id`, oldest first."""
    rows = await conn.fetch(
        "SELECT id, aggregate, aggregate_id, event, payload, created_at FROM outbox "
        "WHERE id > $1 ORDER BY id LIMIT $2",
        after_id,
        limit,
    )
    return [OutboxEvent(**row) for row in rows]
