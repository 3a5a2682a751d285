"""GET /metrics in Prometheus' text format, and the middleware that gives every request an id.

Counted as they happen: GraphQL operations by name, type and outcome, with their duration,
SQL statements and loader batch sizes (schema/telemetry.py reports each one); HTTP requests
by route, method and status. Read at scrape time: the engine's counters (compiled, fallbacks
by reason, cached plans), rate-limit refusals by door, subscribers by topic kind, projector
lag and broker lag. Labels stay bounded: operation names are kept as the client sent them
for the first `metrics_max_operations` distinct names, and counted as "other" after that.
One registry per app, so two apps in a process (tests) count apart."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coachgraph import observe
from coachgraph.runtime import Resources
from coachgraph.schema.telemetry import Operation

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_ID = "X-Request-Id"
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,99}")
_ROUTES = ("/graphql", "/healthz", "/metrics", "/static", "/ingest", "/media", "/live")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_COUNTS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233)
_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class Metrics:
    """The app's metrics; `operation` is the schema's observer, `render` answers a scrape."""

    def __init__(self, max_operations: int) -> None:
        self.registry = CollectorRegistry()
        self.max_operations = max_operations
        self._names: set[str] = set()
        self.resources: Resources | None = None  # set once the lifespan has opened them
        self.engine_stats: Callable[[], dict[str, int]] = dict  # the schema's engine.stats
        self._lag: dict[str, float] = {}
        labels = ("operation", "type")
        self.operations = Counter(
            "coachgraph_graphql_operations",
            "GraphQL operations by name, type and outcome (ok or the first error's code)",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "coachgraph_graphql_operation_duration_seconds",
            "Time from parsing to the result (a subscription: its whole life)",
            labels,
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.statements = Histogram(
            "coachgraph_graphql_operation_sql_statements",
            "SQL statements sent to PostgreSQL per operation",
            labels,
            buckets=_COUNTS,
            registry=self.registry,
        )
        self.batches = Histogram(
            "coachgraph_graphql_loader_batch_size",
            "Keys per DataLoader batch, by the operation that made it",
            labels,
            buckets=_SIZES,
            registry=self.registry,
        )
        self.http = Histogram(
            "coachgraph_http_request_duration_seconds",
            "HTTP requests by route, method and status: time to the end of the response",
            ("route", "method", "status"),
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.registry.register(_ReadAtScrape(self))

    def label(self, name: str | None) -> str:
        """A bounded label for an operation name."""
        if name is None:
            return "anonymous"
        if not _NAME.fullmatch(name):
            return "invalid"
        if name in self._names:
            return name
        if len(self._names) >= self.max_operations:
            return "other"
        self._names.add(name)
        return name

    def operation(self, op: Operation) -> None:
        labels = (self.label(op.name), op.kind)
        self.operations.labels(*labels, op.outcome).inc()
        self.duration.labels(*labels).observe(op.seconds)
        self.statements.labels(*labels).observe(op.statements)
        sizes = self.batches.labels(*labels)
        for size in op.batches:
            sizes.observe(size)

    def request(self, path: str, method: str, status: int, seconds: float) -> None:
        route = next((r for r in _ROUTES if path == r or path.startswith(r + "/")), "other")
        method = method if method in _METHODS else "other"
        self.http.labels(route, method, str(status)).observe(seconds)

    async def render(self) -> bytes:
        """The text exposition, after reading what needs a round trip (projector and broker
        lag, each within the store timeout; a store that does not answer leaves it out)."""
        self._lag = {}
        resources = self.resources
        if resources is not None:
            timeout = resources.settings.limits.store_timeout_ms / 1000
            try:
                lag = await asyncio.wait_for(resources.projector.lag(), timeout)
                self._lag["projector_pending"] = lag.pending
                self._lag["projector_oldest"] = lag.oldest_seconds or 0.0
            except Exception as err:  # informative: the scrape still answers
                log.warning("metrics: projection lag unknown: %s: %s", type(err).__name__, err)
            try:
                self._lag["broker"] = await asyncio.wait_for(resources.broker.lag(), timeout)
            except Exception as err:
                log.warning("metrics: broker lag unknown: %s: %s", type(err).__name__, err)
        return generate_latest(self.registry)


class _ReadAtScrape(Collector):
    """What other parts already count, read when Prometheus asks."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # unchecked: the families depend on what exists at scrape time

    def collect(self) -> Iterator[Metric]:
        resources = self.metrics.resources
        if resources is None:
            return
        yield from _engine(self.metrics.engine_stats())
        limiter = resources.limiter
        refusals = CounterMetricFamily(
            "coachgraph_rate_limit_refusals",
            "Requests, handshakes and WebSocket operations refused by the rate limits, by door",
            labels=["door"],
        )
        for door, count in sorted(limiter.refusals.items(), key=lambda kv: kv[0].value):
            refusals.add_metric([door.value], count)
        refusals.add_metric(["ws-connections"], limiter.connections.refused)
        yield refusals
        subscribers = GaugeMetricFamily(
            "coachgraph_subscribers",
            "Live subscribers in this process, by topic kind",
            labels=["topic"],
        )
        kinds: dict[str, int] = {}
        for topic, subs in list(resources.broker.fanout.topics.items()):
            kind = topic.partition(":")[0]
            kinds[kind] = kinds.get(kind, 0) + len(subs)
        for kind, count in sorted(kinds.items()):
            subscribers.add_metric([kind], count)
        yield subscribers
        lag = self.metrics._lag
        if "projector_pending" in lag:
            yield GaugeMetricFamily(
                "coachgraph_projector_pending_events",
                "Outbox events the projector has not applied yet",
                value=lag["projector_pending"],
            )
            yield GaugeMetricFamily(
                "coachgraph_projector_lag_seconds",
                "Age of the oldest outbox event not applied yet (0: caught up)",
                value=lag["projector_oldest"],
            )
        if "broker" in lag:
            yield GaugeMetricFamily(
                "coachgraph_broker_lag_seconds",
                "Newest message published less the newest this process delivered",
                value=lag["broker"],
            )


def _engine(stats: dict[str, int]) -> Iterator[Metric]:
    """The compiled engine's counters (`schema.engine.stats()`), as Prometheus families."""
    plans = GaugeMetricFamily("coachgraph_engine_plans", "Compiled plans cached")
    plans.add_metric([], stats.get("plans", 0))
    yield plans
    fallbacks = CounterMetricFamily(
        "coachgraph_engine_fallbacks",
        "Operations handed to graphql-core instead of a compiled plan, by reason",
        labels=["reason"],
    )
    executions = CounterMetricFamily(
        "coachgraph_engine_executions",
        "Compiled executions and shared subscription events, by kind",
        labels=["kind"],
    )
    for key, count in sorted(stats.items()):
        if key.startswith("fallback: "):
            fallbacks.add_metric([key.removeprefix("fallback: ")], count)
        elif key != "plans":
            executions.add_metric([key], count)
    yield fallbacks
    yield executions


async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(await metrics.render(), media_type=CONTENT_TYPE)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]


class RequestIds:
    """Outermost: each HTTP request and WebSocket gets an id (a sane incoming X-Request-Id,
    else a new one) that every log line written for it carries and the response returns in
    X-Request-Id; HTTP requests are timed into the metrics by route and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = observe.sane_request_id(value.decode("latin-1"))
                break
        rid = incoming or uuid.uuid4().hex
        token = observe.request_id.set(rid)
        header = (b"x-request-id", rid.encode())
        started = time.perf_counter()
        status = 500  # until the response says otherwise (an exception answered by Starlette)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.accept"):
                message["headers"] = [*message.get("headers", []), header]
                status = message.get("status", 101)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            observe.request_id.reset(token)
            if scope["type"] == "http":
                metrics: Metrics | None = getattr(scope["app"].state, "metrics", None)
                if metrics is not None:
                    seconds = time.perf_counter() - started
                    metrics.request(scope["path"], scope["method"], status, seconds)
