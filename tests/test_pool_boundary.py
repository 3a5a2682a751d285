"""The store boundary of `async with pool.acquire()`: only the connection's own failures are
`Unavailable` (and drop the pool); anything else the body raises propagates as it is."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from asyncpg import exceptions as pgerr

from coachgraph.errors import Unavailable
from coachgraph.stores.db import Database


@pytest.fixture
async def one_connection(pg_dsn: str) -> AsyncIterator[Database]:
    """A pool of exactly one connection: its backend pid tells whether it was replaced."""
    db = await Database.connect(pg_dsn, min_size=1, max_size=1)
    try:
        yield db
    finally:
        await db.close()


async def backend_pid(db: Database) -> int:
    async with db.pool.acquire() as conn:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
        return pid


@pytest.mark.parametrize(
    "raised",
    [TimeoutError("the graph took too long"), FileNotFoundError("some other file")],
    ids=["timeout", "oserror"],
)
async def test_other_errors_of_the_body_propagate_and_keep_the_pool(
    one_connection: Database, raised: Exception
) -> None:
    before = await backend_pid(one_connection)
    with pytest.raises(type(raised)) as caught:
        async with one_connection.pool.acquire() as conn, conn.transaction():
            await conn.fetchval("SELECT 1")
            raise raised
    assert caught.value is raised
    assert await backend_pid(one_connection) == before  # not expired, not reconnected


async def test_a_statement_of_the_body_losing_its_connection_is_unavailable(
    one_connection: Database,
) -> None:
    before = await backend_pid(one_connection)
    with pytest.raises(Unavailable) as caught:
        async with one_connection.pool.acquire() as conn:
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert isinstance(caught.value.__cause__, pgerr.PostgresConnectionError)
    assert await backend_pid(one_connection) != before  # the pool reconnected


async def test_any_error_of_the_body_once_its_connection_closed_is_unavailable(
    one_connection: Database,
) -> None:
    before = await backend_pid(one_connection)
    with pytest.raises(Unavailable):
        async with one_connection.pool.acquire() as conn:
            with contextlib.suppress(pgerr.PostgresConnectionError):
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            raise TimeoutError("noticed late")
    assert await backend_pid(one_connection) != before


def test_a_connection_stuck_by_a_terminated_session_is_lost() -> None:
    """asyncpg can hand back a connection whose session the server cut mid-operation with its
    protocol stuck; that is an outage to report (UNAVAILABLE) and a connection to drop."""
    from asyncpg.exceptions import InternalClientError

    from coachgraph.stores.db import is_connection_error, is_connection_lost

    stuck = InternalClientError("cannot perform operation: another operation is in progress")
    assert is_connection_lost(stuck) and is_connection_error(stuck)
    assert not is_connection_lost(ValueError("a bug"))
