"""Automatic persisted queries: documents by their SHA-256, bounded, in this process and, with
REDIS_URL, in Redis shared by every replica (a document one replica learnt, all know).

The store is a cache, not a record: a miss makes the client send the document again (Apollo's
link does), so a Redis that does not answer degrades to this process's own memory, logged once
per outage, and never fails a request.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from coachgraph.config import Settings

log = logging.getLogger(__name__)

_PREFIX = "coachgraph:apq"
# one document in, the oldest out past the bound, atomically: the bodies in a hash, their order
# of last use in a sorted set
_REMEMBER = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  local gone = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #gone, 2 do redis.call('HDEL', KEYS[1], gone[i]) end
end
return over
"""
_ERRORS = (aioredis.ConnectionError, aioredis.TimeoutError, OSError)
_PG_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class DocumentStore:
    """At most `size` documents by hash: the most recently used kept, here and in Redis."""

    def __init__(self, size: int, redis: Any = None, *, postgres: Any = None) -> None:
        self.size = size
        self._local: OrderedDict[str, str] = OrderedDict()
        self._redis = redis
        self._postgres = postgres  # a pool: the workers of one server share documents there
        self._down = False

    @classmethod
    def open(cls, settings: Settings, *, pool: Any = None) -> DocumentStore:
        """Shared through Redis when REDIS_URL is set; through Postgres (`pool`) for several
        workers without Redis; else this process's alone."""
        size = settings.limits.persisted_queries_max
        if not settings.redis_url and settings.workers > 1 and pool is not None:
            return cls(size, postgres=pool)
        if not settings.redis_url:
            return cls(size)
        timeout = settings.limits.store_timeout_ms / 1000
        client = aioredis.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        return cls(size, client)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def get(self, digest: str) -> str | None:
        """The document whose SHA-256 (hex) is `digest`, if it is remembered anywhere."""
        found = self._local.get(digest)
        if found is not None:
            self._local.move_to_end(digest)
            return found
        if self._postgres is not None:
            return await self._get_shared(digest)
        if self._redis is None:
            return None
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hget(f"{_PREFIX}:docs", digest)
                pipe.zadd(f"{_PREFIX}:used", {digest: time.time()}, xx=True)
                raw, _ = await pipe.execute()
        except _ERRORS as err:
            self._outage(err)
            return None
        self._up()
        if raw is None:
            return None
        document = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._keep(digest, document)
        return document

    async def put(self, digest: str, document: str) -> None:
        """Remember `document` under its SHA-256 (the caller checked it matches)."""
        self._keep(digest, document)
        if self._postgres is not None:
            await self._put_shared(digest, document)
            return
        if self._redis is None:
            return
        keys = [f"{_PREFIX}:docs", f"{_PREFIX}:used"]
        try:
            await self._redis.eval(_REMEMBER, 2, *keys, digest, document, time.time(), self.size)
        except _ERRORS as err:
            self._outage(err)
            return
        self._up()

    async def _get_shared(self, digest: str) -> str | None:
        try:
            document = await self._postgres.fetchval(
                "UPDATE persisted_queries SET used_at = now() WHERE digest = $1 RETURNING document",
                digest,
            )
        except _PG_ERRORS as err:
            self._outage(err)
            return None
        self._up()
        if document is None:
            return None
        self._keep(digest, document)
        return str(document)

    async def _put_shared(self, digest: str, document: str) -> None:
        """Remember it, and forget the least recently used past the bound."""
        try:
            await self._postgres.execute(
                "WITH kept AS (INSERT INTO persisted_queries (digest, document) "
                "VALUES ($1, $2) ON CONFLICT (digest) DO UPDATE SET used_at = now()) "
                "DELETE FROM persisted_queries WHERE digest IN (SELECT digest "
                "FROM persisted_queries ORDER BY used_at DESC OFFSET $3)",
                digest,
                document,
                max(0, self.size - 1),  # the one just put is not seen by the DELETE
            )
        except _PG_ERRORS as err:
            self._outage(err)
            return
        self._up()

    def _keep(self, digest: str, document: str) -> None:
        self._local[digest] = document
        self._local.move_to_end(digest)
        while len(self._local) > self.size:
            self._local.popitem(last=False)

    def _outage(self, err: Exception) -> None:
        if not self._down:
            store = "Postgres" if self._postgres is not None else "Redis"
            log.warning("persisted queries: %s unavailable (%s); this process's only", store, err)
        self._down = True

    def _up(self) -> None:
        if self._down:
            log.info("persisted queries: the shared store answers again")
        self._down = False
