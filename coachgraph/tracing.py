"""OpenTelemetry traces, optional and off by default: `COACHGRAPH_TRACING=1` with the
`[otel]` extra installed (`pip install 'coachgraph[otel]'`). Spans: each HTTP request and
WebSocket (ASGI), each GraphQL operation (schema/telemetry.py), each asyncpg statement, each
Neo4j statement (graph/neo4j.py). Spans go to the OTLP/HTTP exporter configured by the
standard OTEL_EXPORTER_OTLP_* variables, or to the provider the caller hands in (tests).

OpenTelemetry's instrumentation is process-wide (asyncpg is patched at the class level), so
the tracer that `span` uses is too: set while an app that traces is open, None otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from coachgraph.config import Settings, SettingsError

_MISSING = (
    "COACHGRAPH_TRACING is on but OpenTelemetry is not installed: pip install 'coachgraph[otel]'"
)


class _Active:
    tracer: Any = None  # an opentelemetry Tracer while tracing is on


_active = _Active()


@contextmanager
def span(name: str, **attributes: str | int) -> Iterator[Any]:
    """A span around the body when tracing is on (yielded, to add attributes); else None."""
    tracer = _active.tracer
    if tracer is None:
        yield None
        return
    from opentelemetry import context, trace

    current = tracer.start_span(name, attributes=attributes)
    made = trace.set_span_in_context(current)
    token = context.attach(made)
    try:
        yield current
    except Exception as err:  # not GeneratorExit: a stream closed by its client is no error
        current.record_exception(err)
        current.set_status(trace.Status(trace.StatusCode.ERROR, type(err).__name__))
        raise
    finally:
        current.end()
        # a subscription's stream may be closed from another context than the one that
        # opened it; OpenTelemetry would log a traceback for detaching there
        if context.get_current() is made:
            context.detach(token)


def provider_for(settings: Settings, provider: Any = None) -> Any:
    """The TracerProvider to trace with: `provider`, else one exporting over OTLP/HTTP;
    None when tracing is off. Refuses in one line when the extra is missing."""
    if not settings.tracing:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise SettingsError(_MISSING) from None
    if provider is not None:
        return provider
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    made = TracerProvider(resource=Resource.create({"service.name": "coachgraph"}))
    made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return made


def asgi_middleware(provider: Any) -> tuple[Any, dict[str, Any]]:
    """The ASGI instrumentation and its options, for starlette's Middleware."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware, {"tracer_provider": provider}


def start(provider: Any) -> None:
    """Trace asyncpg statements and coachgraph's own spans with `provider`."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _active.tracer = provider.get_tracer("coachgraph")


def stop(provider: Any) -> None:
    """Undo `start`, sending what is buffered."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    _active.tracer = None
    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    provider.force_flush()
