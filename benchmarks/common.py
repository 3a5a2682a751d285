"""Shared set-up for the graph benchmarks: an embedded PostgreSQL holding seeded data."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from coachgraph.services import seed_database
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate


async def seeded(
    name: str, *, coaches: int, athletes: int, seed: int
) -> tuple[EmbeddedPostgres, Database, str]:
    """A database under the temp dir holding exactly this seed (made once, then reused)."""
    root = Path(tempfile.gettempdir()) / f"coachgraph-bench-{name}-{coaches}-{athletes}-{seed}"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pg")
    dsn = await server.start()
    db = await Database.connect(dsn, min_size=1, max_size=4)
    async with db.pool.acquire() as conn:
        await migrate(conn)
    if not await db.pool.fetchval("SELECT count(*) FROM coaches"):
        started = time.perf_counter()
        await seed_database(db, coaches=coaches, athletes=athletes, seed_value=seed)
        print(f"seeded in {time.perf_counter() - started:.1f} s")
    return server, db, dsn


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]
