"""The outbox: one event per change, written in the transaction of the change."""

from __future__ import annotations

from typing import Any

from coachgraph.stores.sql import Executor

Dirty = dict[str, set[int]]  # aggregate ("coach", ...) → ids a batch of outbox events touched


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
