"""OpenTelemetry traces (the [otel] extra, COACHGRAPH_TRACING): one trace per request with the
ASGI server span, the GraphQL operation's span and a span per SQL statement beneath it; a
span per Neo4j statement; nothing when tracing is off (the default)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from neo4j import AsyncDriver
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from coachgraph import tracing
from coachgraph.app import create_app
from coachgraph.config import Settings
from tests.factories import Factory
from tests.graph.conftest import make_graph


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def named(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert found, [s.name for s in spans]
    return found[0]


async def test_a_request_is_one_trace_down_to_its_sql(
    settings: Settings, factory: Factory, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, spans = exporter
    await factory.coach(name="Traced Tom")
    app = create_app(settings.with_(tracing=True), start_projector=False, tracer_provider=provider)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            spans.clear()  # the lifespan's own statements (migrations, projector)
            answer = await client.post(
                "/graphql",
                json={"query": "query CoachNames { coaches { edges { node { name } } } }"},
            )
    assert answer.json()["data"]["coaches"]["edges"] == [{"node": {"name": "Traced Tom"}}]
    assert tracing._active.tracer is None  # stopped with the app
    finished = spans.get_finished_spans()
    server = named(finished, "POST /graphql")
    operation = named(finished, "query CoachNames")
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.name"] == "CoachNames"
    sql = [s for s in finished if s.attributes and s.attributes.get("db.system") == "postgresql"]
    assert sql, [s.name for s in finished]
    trace_ids = {s.context.trace_id for s in (server, operation, *sql) if s.context}
    assert len(trace_ids) == 1
    assert operation.parent is not None
    assert all(s.parent is not None and s.parent.span_id == operation.context.span_id for s in sql)  # type: ignore[union-attr]


async def test_neo4j_statements_are_spans(
    bolt_driver: AsyncDriver, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, spans = exporter
    graph = await make_graph("neo4j", bolt_driver)
    tracing.start(provider)
    try:
        await graph.ping()
    finally:
        tracing.stop(provider)
    query = named(spans.get_finished_spans(), "neo4j.query")
    assert query.attributes is not None
    assert query.attributes["db.system"] == "neo4j"
    assert query.attributes["db.statement"] == "RETURN 1 AS ok"


async def test_tracing_is_off_by_default(
    settings: Settings, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, spans = exporter
    assert Settings.from_env({}).tracing is False
    app = create_app(settings, start_projector=False, tracer_provider=provider)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await client.post("/graphql", json={"query": "{ coaches { totalCount } }"})
    assert spans.get_finished_spans() == ()
