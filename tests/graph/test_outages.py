"""The Bolt graph server killed and started again (empty) under a running app: match queries
answer UNAVAILABLE meanwhile, the projector retries with capped exponential backoff, and the
projection converges (rebuilt, then the events of the outage applied) once it is back."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

import coachgraph.runtime as resources_module
from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.graph.neo4j import Neo4jGraph
from coachgraph.ids import to_global_id as gid
from coachgraph.runtime import Resources
from tests import servers
from tests.conftest import token_for
from tests.factories import Factory
from tests.graph.test_matching_api import world
from tests.servers import RedisProcess

# a store goes down mid-test: answers depend on when they are asked (conftest.one_path)
pytestmark = pytest.mark.usefixtures("one_path")

MATCH = """query($a: ID!) { matchCoaches(athleteId: $a, first: 10) { score coach { name } } }"""
DEADLINE = 90.0


# every wait here may take this long: servers restart under it
until = functools.partial(servers.until, deadline=DEADLINE)


async def test_bolt_server_outage(
    settings: Settings, factory: Factory, tmp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one connection: FalkorDB's experimental Bolt wedges with several (ARCHITECTURE.md)
    monkeypatch.setattr(resources_module, "Neo4jGraph", functools.partial(Neo4jGraph, pool_size=1))
    with RedisProcess(tmp_root / "bolt-outage", falkordb=True) as server:
        athlete, _, goals = await world(factory)
        limits = dataclasses.replace(
            settings.limits,
            store_retry_initial_ms=50,
            store_retry_max_ms=500,
            graph_query_timeout_ms=10_000,
            store_timeout_ms=2_000,
        )
        app = create_app(
            settings.with_(
                neo4j_uri=server.bolt_url,
                neo4j_user="falkordb",
                neo4j_database="outage",
                data_dir=tmp_root / "bolt-outage-app",
                projector_poll_seconds=0.2,
                limits=limits,
            )
        )
        async with LifespanManager(app) as manager:
            resources: Resources = manager._state["resources"]
            assert isinstance(resources.graph, Neo4jGraph)
            projector = resources.projector
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                token = token_for("athlete", athlete)

                async def match() -> dict[str, Any]:
                    response = await http.post(
                        "/graphql",
                        json={"query": MATCH, "variables": {"a": gid("Athlete", athlete)}},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    body: dict[str, Any] = response.json()
                    return body

                body = await match()
                assert "errors" not in body, body
                assert len(body["data"]["matchCoaches"]) == 2

                server.kill()
                codes: list[str] = []

                async def unavailable() -> bool:
                    body = await match()
                    for error in body.get("errors", ()):
                        codes.append(error["extensions"]["code"])
                    return "UNAVAILABLE" in codes

                await until(unavailable, "matchCoaches to answer UNAVAILABLE")
                assert set(codes) == {"UNAVAILABLE"}, codes  # never INTERNAL
                health = await http.get("/healthz")
                assert health.status_code == 503
                assert health.json()["failed"] == ["graph"]
                assert health.json()["postgres"] == "ok"

                # a write during the outage: committed in Postgres, the projector retries it
                coach = await factory.coach(name="Coach late")
                await factory.teach(coach.id, goals[0], level=5)
                await until(lambda: projector.failures >= 3, "the projector to retry")
                assert projector.retry._next <= projector.retry.maximum  # capped

                server.start()  # the same port, and empty: FalkorDB lost the graph

                async def converged() -> bool:
                    body = await match()
                    if "errors" in body:
                        assert {e["extensions"]["code"] for e in body["errors"]} <= {
                            "UNAVAILABLE",
                            "NOT_FOUND",  # rebuilt but the athlete not yet written
                        }, body
                        return False
                    return len(body["data"]["matchCoaches"]) == 3

                await until(converged, "the projection to converge")
                await until(lambda: projector.failures == 0, "the projector to recover")
                assert (await projector.lag()).pending == 0
                assert (await http.get("/healthz")).status_code == 200
