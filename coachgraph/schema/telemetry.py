"""Each GraphQL operation as operators see it: its name, type, outcome (`ok` or the first
error's code), duration, and the SQL statements and loader batches it caused, handed to a
sink when it ends (api/metrics.py counts them; tracing.py may wrap it in a span)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError

from coachgraph import observe, tracing

from .extensions import present_error


@dataclass(frozen=True, slots=True)
class Operation:
    name: str | None  # as the client named it (api/metrics.py bounds what becomes a label)
    kind: str  # query, mutation, subscription, or unknown (unparsable, no such operation)
    outcome: str  # "ok", or the first error's extensions.code
    seconds: float
    statements: int
    batches: tuple[int, ...]


Sink = Callable[[Operation], None]


class Observed(SchemaExtension):
    """Times and tallies one operation, then reports it to `sink`."""

    def __init__(self, *, sink: Sink) -> None:
        super().__init__()
        self.sink = sink

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        raised: Exception | None = None
        try:
            with observe.tallying() as tally:
                yield
        except Exception as err:  # a document that does not parse leaves by an exception
            raised = err
            raise
        finally:
            self._report(started, tally, raised)

    def _report(self, started: float, tally: observe.Tally, raised: Exception | None) -> None:
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except (RuntimeError, CannotGetOperationTypeError):  # unparsable, or no such operation
            kind = "unknown"
        result = context.result
        errors = (result.errors if result is not None else None) or context.pre_execution_errors
        if raised is not None and not errors:
            errors = [raised if isinstance(raised, GraphQLError) else _refusal(raised)]
        outcome = "ok"
        if errors:
            outcome = str((present_error(errors[0]).extensions or {}).get("code", "INTERNAL"))
        self.sink(
            Operation(
                name=context.operation_name,
                kind=kind,
                outcome=outcome,
                seconds=time.perf_counter() - started,
                statements=tally.statements,
                batches=tuple(tally.batches),
            )
        )


def _refusal(err: Exception) -> GraphQLError:
    """A request refused before execution (no query, no such operation, wrong method): the
    view answers it as BAD_USER_INPUT."""
    return GraphQLError(str(err), original_error=err)


class Traced(SchemaExtension):
    """A span per operation (when tracing is on), named by its type and name once parsed."""

    def on_operation(self) -> Iterator[None]:
        with tracing.span("graphql.operation") as span:
            yield
            if span is not None:
                context = self.execution_context
                try:
                    kind = context.operation_type.value
                except (RuntimeError, CannotGetOperationTypeError):
                    kind = "unknown"
                name = context.operation_name or "anonymous"
                span.update_name(f"{kind} {name}")
                span.set_attribute("graphql.operation.type", kind)
                span.set_attribute("graphql.operation.name", name)
