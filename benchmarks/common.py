"""Shared set-up for the graph benchmarks: an embedded PostgreSQL holding seeded data."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

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


class InProcess:
    """GraphQL executed in this process, without HTTP: the app's schema (compiled, or the
    graphql-core path), a fresh Context per operation as the view makes one per request, an
    admin viewer, and the result encoded to JSON bytes as the view encodes it. What it times
    is the engine, the resolvers, policy and the loaders' statements: what GraphQL adds to the
    layer below it, without the HTTP floor (uvicorn, Starlette, middlewares, the client)."""

    def __init__(self, db: Database, *, graph: Any = None, search: Any = None) -> None:
        from coachgraph.config import Settings
        from coachgraph.resolvers.policy import Role, Viewer
        from coachgraph.schema.schema import build_schema

        self.db, self.graph, self.search = db, graph, search
        self.settings = Settings(data_dir=Path(tempfile.gettempdir()), jwt_secret="x" * 40)
        self.viewer = Viewer(role=Role.ADMIN)
        self.schemas = {
            "compiled": build_schema(self.settings.limits, compiled=True),
            "graphql-core": build_schema(self.settings.limits, compiled=False),
        }

    async def execute(self, path: str, query: str, variables: dict[str, Any]) -> bytes:
        from coachgraph.api.encoding import encode
        from coachgraph.resolvers.context import Context

        context = Context(
            self.settings,
            self.db,
            self.viewer,
            self.graph,
            None,
            None,
            self.search,  # type: ignore[arg-type]
        )
        result = await self.schemas[path].execute(
            query, variable_values=variables, context_value=context
        )
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        return encode(body)
