"""What operators see: /metrics counting operations, their SQL statements, loader batches,
refusals and the engine's counters; request ids in a response header and in JSON log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from strawberry.http.exceptions import WebSocketDisconnected

from coachgraph.api.metrics import Metrics
from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.ids import to_global_id
from coachgraph.runtime import Resources
from coachgraph.schema.telemetry import Operation
from tests.conftest import SECRET, GraphQLClient
from tests.factories import Factory
from tests.servers import announced_port, cli_env, start_serve
from tests.test_cli_commands import fresh_database
from tests.test_rate_limits import limited

__all__ = ["fresh_database"]  # the fixture, used here by name


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_an_operation_its_statements_and_batches(
    client: httpx.AsyncClient, gql: GraphQLClient, factory: Factory
) -> None:
    for _ in range(3):
        coach = await factory.coach()
        await factory.program(coach.id, [])
    query = "query CoachList { coaches(first: 10) { edges { node { name programs { title } } } } }"
    op = {"operation": "CoachList", "type": "query"}
    before = await scrape(client)
    body = await gql(query)
    assert len(body["data"]["coaches"]["edges"]) == 3
    after = await scrape(client)

    ran = "coachgraph_graphql_operations_total"
    assert value(after, ran, **op, outcome="ok") == value(before, ran, **op, outcome="ok") + 1
    statements = "coachgraph_graphql_operation_sql_statements"
    assert (
        value(after, f"{statements}_count", **op) == value(before, f"{statements}_count", **op) + 1
    )
    sent = value(after, f"{statements}_sum", **op) - value(before, f"{statements}_sum", **op)
    assert 2 <= sent <= 4  # the page (and its count), then one statement for every programs
    batch = "coachgraph_graphql_loader_batch_size"
    assert value(after, f"{batch}_sum", **op) - value(before, f"{batch}_sum", **op) == 3
    latency = "coachgraph_graphql_operation_duration_seconds_count"
    assert value(after, latency, **op) == value(before, latency, **op) + 1
    http = {"route": "/graphql", "method": "POST", "status": "200"}
    timed = "coachgraph_http_request_duration_seconds_count"
    assert value(after, timed, **http) >= value(before, timed, **http) + 1
    # read at scrape time: the engine's counters, the projector, subscribers
    compiled = "coachgraph_engine_executions_total"
    assert value(after, compiled, kind="compiled") > value(before, compiled, kind="compiled")
    assert ("coachgraph_projector_pending_events", ()) in after
    assert ("coachgraph_broker_lag_seconds", ()) in after


async def test_outcomes_are_error_codes(
    client: httpx.AsyncClient, gql: GraphQLClient, factory: Factory
) -> None:
    athlete = to_global_id("Athlete", (await factory.athlete()).id)
    before = await scrape(client)
    await client.post("/graphql", json={"query": "query Broken { coaches(first: 1) {"})
    await gql('query Secret { node(id: "%s") { id } }' % athlete)
    after = await scrape(client)
    ran = "coachgraph_graphql_operations_total"
    broken = {"operation": "anonymous", "type": "unknown", "outcome": "BAD_USER_INPUT"}
    assert value(after, ran, **broken) == value(before, ran, **broken) + 1
    secret = {"operation": "Secret", "type": "query", "outcome": "FORBIDDEN"}
    assert value(after, ran, **secret) == value(before, ran, **secret) + 1


async def test_rate_limit_refusals_are_counted(
    client: httpx.AsyncClient, app_resources: tuple[Any, Resources]
) -> None:
    async with limited(app_resources[1], rate_limit_per_minute=1):
        codes = [(await client.post("/graphql", json={"query": "{ __typename }"})).status_code]
        codes.append((await client.post("/graphql", json={"query": "{ __typename }"})).status_code)
        samples = await scrape(client)
    assert codes == [200, 429]
    assert value(samples, "coachgraph_rate_limit_refusals_total", door="http") == 1


def test_operation_labels_are_bounded() -> None:
    metrics = Metrics(max_operations=2)
    assert [metrics.label(n) for n in ("A", "B", "C", "A", None, "x y", "é", "a" * 101)] == [
        "A",
        "B",
        "other",
        "A",
        "anonymous",
        "invalid",
        "invalid",
        "invalid",
    ]
    for n in range(50):
        metrics.operation(Operation(f"Op{n}", "query", "ok", 0.01, 1, (1,)))
    series = {
        sample.labels["operation"]
        for family in text_string_to_metric_families(
            __import__("prometheus_client").generate_latest(metrics.registry).decode()
        )
        for sample in family.samples
        if "operation" in sample.labels
    }
    assert series == {"other"}


async def test_request_ids_are_returned_and_kept_when_sane(client: httpx.AsyncClient) -> None:
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32
    assert made.headers["x-request-id"] != (await client.get("/healthz")).headers["x-request-id"]
    kept = await client.get("/healthz", headers={"X-Request-Id": "edge-42.a:b"})
    assert kept.headers["x-request-id"] == "edge-42.a:b"
    for forged in ("a b", "x" * 200, '"quoted"', "line\\nbreak"):
        answer = await client.get("/healthz", headers={"X-Request-Id": forged})
        assert answer.headers["x-request-id"] != forged
        assert len(answer.headers["x-request-id"]) == 32


async def test_json_logs_carry_the_request_id_the_response_names(
    fresh_database: str, tmp_path: Path
) -> None:
    env = cli_env(
        tmp_path,
        DATABASE_URL=fresh_database,
        COACHGRAPH_JWT_SECRET=SECRET,
        COACHGRAPH_LOG_FORMAT="json",
    )
    log_path = tmp_path / "serve.log"
    proc = await start_serve(env, log_path)
    try:
        port = await announced_port(log_path, proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post("/graphql", json={"query": "{ coaches { totalCount } }"})
        assert response.status_code == 200
        rid = response.headers["x-request-id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    assert proc.returncode == 0
    # stdout's banner aside ("coachgraph: serving ..."), every line is one JSON object
    lines = [ln for ln in log_path.read_text().splitlines() if not ln.startswith("coachgraph:")]
    entries = [json.loads(line) for line in lines if line.strip()]
    assert entries
    mine = [e for e in entries if e.get("request_id") == rid]
    assert mine and any("POST /graphql" in e["message"] for e in mine), entries
    assert {"time", "level", "logger", "message"} <= set(mine[0])


def test_a_websocket_closed_under_an_operation_is_not_an_error(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Strawberry logs "Exception in worker task" with a traceback when a client leaves while
    its operation runs; that is ordinary. Any other failure of a worker task still logs."""
    create_app(settings)
    logger = logging.getLogger("strawberry.ws.task")
    with caplog.at_level(logging.ERROR, logger="strawberry.ws.task"):
        for error in (WebSocketDisconnected(), RuntimeError("a real bug")):
            try:
                raise error
            except Exception as err:
                logger.exception("Exception in worker task", exc_info=err)
    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == [error]
    assert isinstance(caplog.records[0].exc_info[1], RuntimeError)  # type: ignore[index]
