"""Every door's rate-limit budget per client: sliding windows in Redis with REDIS_URL (shared by
the replicas; counted in this process while Redis does not answer), in memory otherwise.

The HTTP side (who the client is, when to answer 429) is `api/ratelimit.py`; this is the
backend the composition root opens and closes.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections import Counter

import redis.asyncio as aioredis
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from coachgraph.config import Limits, Settings

log = logging.getLogger(__name__)


class Door(enum.Enum):
    HTTP = "http"
    INGEST = "ingest"
    MEDIA = "media"
    WS_CONNECT = "ws-connect"
    WS_OPERATION = "ws-operation"


def door_rates(limits: Limits) -> dict[Door, tuple[RateLimitItem, ...]]:
    """Each door's windows: a burst (the most in any one second) and a rate per minute."""

    def rates(door: Door, per_minute: int, burst: int | None) -> tuple[RateLimitItem, ...]:
        namespace = f"coachgraph:{door.value}"
        minute = RateLimitItemPerMinute(per_minute, namespace=namespace)
        if burst is None or burst >= per_minute:  # the minute's window bounds it already
            return (minute,)
        return (RateLimitItemPerSecond(burst, namespace=namespace), minute)

    return {
        Door.HTTP: rates(Door.HTTP, limits.rate_limit_per_minute, limits.rate_limit_burst),
        Door.INGEST: rates(Door.INGEST, limits.ingest_rate_per_minute, limits.ingest_rate_burst),
        Door.MEDIA: rates(Door.MEDIA, limits.media_rate_per_minute, limits.media_rate_burst),
        Door.WS_CONNECT: rates(Door.WS_CONNECT, limits.ws_connect_rate_per_minute, None),
        Door.WS_OPERATION: rates(
            Door.WS_OPERATION, limits.ws_operation_rate_per_minute, limits.ws_operation_rate_burst
        ),
    }


class Connections:
    """Open WebSocket connections per client in this process, up to `cap` each."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[str, int] = {}
        self.refused = 0  # connections refused at the cap (metrics)

    def room(self, client: str) -> bool:
        """Whether `client` may open one more now."""
        return self._open.get(client, 0) < self.cap

    def acquire(self, client: str) -> bool:
        count = self._open.get(client, 0)
        if count >= self.cap:
            self.refused += 1
            return False
        self._open[client] = count + 1
        return True

    def release(self, client: str) -> None:
        count = self._open.get(client, 0) - 1
        if count > 0:
            self._open[client] = count
        else:
            self._open.pop(client, None)


class Limiter:
    """Every door's budget per client; `hit` spends one and tells when to come back."""

    def __init__(
        self,
        limits: Limits,
        storage: Storage,
        *,
        pool: aioredis.ConnectionPool | None = None,
    ) -> None:
        self.rates = door_rates(limits)
        self.connections = Connections(limits.ws_connections_per_client)
        self.refusals: Counter[Door] = Counter()  # requests refused per door (metrics)
        self.storage = storage
        self._pool = pool
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        # while a shared storage does not answer, each process counts on its own
        self._local = MemoryStorage() if pool is not None else None
        self._local_strategy = (
            SlidingWindowCounterRateLimiter(self._local) if self._local is not None else None
        )
        self._storage_down_until = 0.0
        # after the shared storage fails, count in this process for this long
        self._fallback_seconds = limits.limiter_local_fallback_ms / 1000

    @classmethod
    def open(cls, settings: Settings) -> Limiter:
        """In Redis when REDIS_URL is set (shared by every replica), else in this process."""
        if not settings.redis_url:
            return cls(settings.limits, MemoryStorage())
        timeout = settings.limits.limiter_redis_timeout_ms / 1000
        pool = aioredis.ConnectionPool.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        storage = RedisStorage(
            _storage_uri(settings.redis_url),
            implementation="redispy",  # redis.asyncio, which the broker uses too
            wrap_exceptions=True,
            key_prefix="coachgraph:limits",
            connection_pool=pool,  # type: ignore[arg-type]  # documented; typed as options
        )
        return cls(settings.limits, storage, pool=pool)

    async def close(self) -> None:
        for storage in (self.storage, self._local):
            timer = getattr(storage, "timer", None)  # MemoryStorage's expiry sweep
            if timer is not None and not timer.done():
                timer.cancel()
        if self._pool is not None:
            await self._pool.aclose()

    async def hit(self, door: Door, client: str, cost: int = 1) -> int | None:
        """Spend `cost` (one request, or a batch's further operations) of `client`'s budget at
        `door`: None when it may pass, else the whole seconds until it may (Retry-After).
        Refusals are counted by door (metrics)."""
        retry = await self._spend(door, client, cost)
        if retry is not None:
            self.refusals[door] += 1
        return retry

    async def _spend(self, door: Door, client: str, cost: int) -> int | None:
        if self._local_strategy is not None and time.monotonic() < self._storage_down_until:
            return await self._hit(self._local_strategy, door, client, cost)
        try:
            return await self._hit(self._strategy, door, client, cost)
        except StorageError as err:
            if self._local_strategy is None:
                raise
            log.warning(
                "rate-limit storage unavailable (%s); counting in this process for %.0f s",
                err.storage_error,
                self._fallback_seconds,
            )
            self._storage_down_until = time.monotonic() + self._fallback_seconds
            return await self._hit(self._local_strategy, door, client, cost)

    async def _hit(
        self, strategy: SlidingWindowCounterRateLimiter, door: Door, client: str, cost: int
    ) -> int | None:
        for item in self.rates[door]:
            if not await strategy.hit(item, client, cost=cost):
                stats = await strategy.get_window_stats(item, client)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None


def _storage_uri(redis_url: str) -> str:
    scheme, sep, rest = redis_url.partition("://")
    return f"async+{'redis+unix' if scheme == 'unix' else scheme}{sep}{rest}"
