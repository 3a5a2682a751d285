"""Long-lived clients, opened in the app's lifespan and closed there."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from coachgraph.api.auth import resolve_secret
from coachgraph.api.ratelimit import RateLimiter
from coachgraph.config import Settings
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate

log = logging.getLogger(__name__)


@dataclass
class Resources:
    """What every request may use: settings, the database, the signing secret, the limiter."""

    settings: Settings
    db: Database
    jwt_secret: str
    limiter: RateLimiter
    embedded: EmbeddedPostgres | None = None

    async def close(self) -> None:
        await self.db.close()
        if self.embedded is not None:
            await self.embedded.stop()


async def database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """DATABASE_URL, or a private cluster under the data dir when it is unset."""
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(Path(settings.data_dir) / "postgres")
    return await embedded.start(), embedded


async def open_resources(
    settings: Settings, *, create_secret: bool = False, count_statements: bool = False
) -> Resources:
    """Connect, migrate, and hand back everything a request needs."""
    secret = resolve_secret(settings, create=create_secret)
    dsn, embedded = await database_url(settings)
    try:
        db = await Database.connect(
            dsn,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            count_statements=count_statements,
        )
    except BaseException:
        if embedded is not None:
            await embedded.stop()
        raise
    async with db.pool.acquire() as conn:
        await migrate(conn)
    limits = settings.limits
    limiter = RateLimiter(per_minute=limits.rate_limit_per_minute, burst=limits.rate_limit_burst)
    return Resources(settings, db, secret, limiter, embedded)
