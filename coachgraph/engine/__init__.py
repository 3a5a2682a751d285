"""Compiled execution: each operation planned once, then executed without graphql-core's
per-field machinery, with graphql-core's semantics (see plan.py and run.py).

The engine plugs in as the executor class graphql-core builds per operation (and per
subscription event), after parsing, validation and variable coercion, which stay
graphql-core's. What it does not compile (introspection, directives other than @skip and
@include, field middleware) runs through graphql-core unchanged and is counted by reason.
In differential mode (tests) every query and subscription event also runs through
graphql-core with the same context, and a difference is recorded in `MISMATCHES`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Awaitable
from copy import copy
from typing import Any

import orjson
from graphql import GraphQLError, MiddlewareManager
from graphql.execution import ExecutionResult
from graphql.execution.executor import CollectedErrors, Executor

from .plan import Compiler, NotCompiled, Plan, directive_variables
from .run import start

log = logging.getLogger(__name__)

__all__ = ["MISMATCHES", "Engine", "compiled_executor", "remember"]

# Differential mode: also run graphql-core and compare (the test suite turns it on)
DIFFERENTIAL = os.environ.get("COACHGRAPH_ENGINE_DIFFERENTIAL") == "1"
MISMATCHES: list[dict[str, Any]] = []
COMPARED = Counter[str]()  # differential runs by operation type


class Engine:
    """The plan cache and its counters, one per schema."""

    def __init__(self, *, enabled: bool = True, cache_size: int = 256) -> None:
        self.enabled = enabled
        self.cache_size = cache_size
        self.plans: OrderedDict[tuple[Any, ...], Plan | str] = OrderedDict()
        self.directive_variables: OrderedDict[str, tuple[str, ...] | str] = OrderedDict()
        self.counts: Counter[str] = Counter()
        self.event_cache_size = 4096
        self.events: OrderedDict[tuple[int, int], tuple[Any, Plan, ExecutionResult]] = OrderedDict()

    def plan(self, executor: Executor[Any], serially: bool | None = None) -> Plan | None:
        """The executor's operation compiled, from the cache when it was seen; None (counted
        by reason) when it runs through graphql-core."""
        if not self.enabled:
            return None
        why = _unsupported(executor)
        if why is not None:
            self.fallback(why)
            return None
        operation = executor.operation
        body = operation.loc.source.body if operation.loc is not None else None
        if body is None:  # a document built by hand: compile it each time
            found: Plan | str = self._build(executor)
        else:
            found = self._cached(executor, body)
        if isinstance(found, str):
            self.fallback(found)
            return None
        if serially is not None and serially != found.serial:
            self.fallback("serial execution asked of a query")
            return None
        self.counts["compiled"] += 1
        return found

    def _cached(self, executor: Executor[Any], body: str) -> Plan | str:
        operation = executor.operation
        names = self.directive_variables.get(body)
        if names is None:
            names = _directive_variables(executor)
            remember(self.directive_variables, body, names, self.cache_size)
        if isinstance(names, str):
            return names
        coerced = executor.variable_values.coerced
        key = (
            body,
            operation.name.value if operation.name else None,
            # the values themselves: null is not false (graphql-core refuses null there)
            tuple(coerced.get(name) for name in names),
        )
        found = self.plans.get(key)
        if found is None:
            found = self._build(executor)
            remember(self.plans, key, found, self.cache_size)
        else:
            self.plans.move_to_end(key)
        return found

    def _build(self, executor: Executor[Any]) -> Plan | str:
        """The operation's plan, or why it is not compiled."""
        why = _directive_variables(executor)
        if isinstance(why, str):
            return why
        try:
            return Compiler(
                executor.schema,
                executor.fragments,
                executor.variable_values,
                executor.operation,
                executor.hide_suggestions,
            ).build()
        except NotCompiled as why:
            return str(why)

    def event(self, executor: Executor[Any], plan: Plan) -> ExecutionResult | Any:
        """A subscription event whose selection reads only the event's own attributes: every
        subscriber handed the same event object gets the same result object, executed once
        (and, as one object, encoded once by the WebSocket adapter)."""
        payload = executor.root_value
        key = (id(plan), id(payload))
        found = self.events.get(key)
        if found is not None and found[0] is payload and found[1] is plan:
            self.counts["shared event"] += 1
            return found[2]
        result = start(executor, plan)[1]
        if isinstance(result, ExecutionResult):  # plain attributes: nothing was awaited
            # the event and the plan are kept with the result: their ids are not reused while
            # it is cached
            remember(self.events, key, (payload, plan, result), self.event_cache_size)
        return result

    def fallback(self, reason: str) -> None:
        """Count an operation handed to graphql-core; say so in the log the first time."""
        key = f"fallback: {reason}"
        if not self.counts[key]:
            log.info("graphql-core executes operations of this kind: %s", reason)
        self.counts[key] += 1

    def stats(self) -> dict[str, int]:
        return {"plans": len(self.plans), **self.counts}


def remember(cache: OrderedDict[Any, Any], key: Any, value: Any, size: int) -> None:
    """Keep `value` in a bounded cache, the least recently stored leaving first."""
    cache[key] = value
    while len(cache) > size:
        cache.popitem(last=False)


def _directive_variables(executor: Executor[Any]) -> tuple[str, ...] | str:
    return directive_variables([executor.operation, *executor.fragment_definitions.values()])


def _unsupported(executor: Executor[Any]) -> str | None:
    manager = executor.middleware_manager
    if manager is not None and manager._middleware_resolvers:
        return "field middleware"
    if executor.abort_signal is not None:
        return "abort signal"
    if not executor.error_propagation:
        return "@disableErrorPropagation"
    return None


def compiled_executor(base: type[Executor[Any]], engine: Engine) -> type[Executor[Any]]:
    """`base` (graphql-core's Executor or a subclass) running compiled plans through `engine`."""

    class CompiledExecutor(base):  # type: ignore[valid-type,misc]
        def execute_operation(
            self, serially: bool | None = None
        ) -> ExecutionResult | Awaitable[ExecutionResult] | Any:
            try:
                plan = engine.plan(self, serially)
            except GraphQLError:  # e.g. @skip(if: $v) with $v null: graphql-core words it
                engine.fallback("directive argument error")
                plan = None
            if plan is None:
                return super().execute_operation(serially)
            if DIFFERENTIAL:
                return _differential(self, plan, serially, base, engine)
            if plan.shared_events:
                return engine.event(self, plan)
            return _run(self, plan, serially, base, engine)

    CompiledExecutor.engine = engine
    return CompiledExecutor


def _run(
    executor: Executor[Any],
    plan: Plan,
    serially: bool | None,
    base: type[Executor[Any]],
    engine: Engine,
    roots: dict[str, Any] | None = None,
) -> ExecutionResult | Awaitable[ExecutionResult]:
    """The plan's result; graphql-core's when the errors met while awaiting could have been
    recorded in another order there (two or more: rare, and then exact rather than fast).
    A mutation's root values are kept (in `roots` when given) to replay them then."""
    if plan.serial and roots is None:
        roots = {}
    run, result = start(executor, plan, roots)
    if isinstance(result, ExecutionResult):
        return result

    async def settled() -> ExecutionResult:
        done = await result
        if not run.ambiguous:
            return done
        engine.fallback("concurrent errors")
        again = _graphql_core(executor, serially, base, roots)
        return again if isinstance(again, ExecutionResult) else await again

    return settled()


def _graphql_core(
    executor: Executor[Any],
    serially: bool | None,
    base: type[Executor[Any]],
    roots: dict[str, Any] | None,
) -> ExecutionResult | Awaitable[ExecutionResult] | Any:
    """graphql-core's execution of the operation with the executor's context; a mutation's
    root fields answer what they answered in the compiled run (a mutation runs once)."""
    reference = copy(executor)
    reference.collected_errors = CollectedErrors()
    if roots is not None:
        reference.middleware_manager = MiddlewareManager(_replay(roots))
    return base.execute_operation(reference, serially)


def _differential(
    executor: Executor[Any],
    plan: Plan,
    serially: bool | None,
    base: type[Executor[Any]],
    engine: Engine,
) -> ExecutionResult | Awaitable[ExecutionResult]:
    """The compiled result, checked against graphql-core's with the same context; a difference
    is recorded. Synchronous when both are."""
    roots: dict[str, Any] = {}  # a mutation's root values, replayed; a query's run again
    compiled = _run(executor, plan, serially, base, engine, roots if plan.serial else None)

    def check(ours: ExecutionResult) -> ExecutionResult:
        expected = _graphql_core(executor, serially, base, roots if plan.serial else None)
        if isinstance(expected, ExecutionResult):
            _compare(executor, plan, ours, expected)
            return ours

        async def later() -> ExecutionResult:
            _compare(executor, plan, ours, await expected)
            return ours

        return later()  # type: ignore[return-value]

    if isinstance(compiled, ExecutionResult):
        return check(compiled)

    async def after() -> ExecutionResult:
        checked = check(await compiled)
        return checked if isinstance(checked, ExecutionResult) else await checked

    return after()


def _compare(
    executor: Executor[Any], plan: Plan, compiled: ExecutionResult, expected: ExecutionResult
) -> None:
    ours, theirs = _encoded(compiled), _encoded(expected)
    COMPARED[plan.operation_type.value] += 1
    if ours != theirs:
        operation = executor.operation
        mismatch = {
            "document": operation.loc.source.body if operation.loc else None,
            "compiled": ours.decode(),
            "graphql-core": theirs.decode(),
        }
        MISMATCHES.append(mismatch)
        log.error("compiled execution differs from graphql-core: %s", mismatch)


def _replay(roots: dict[str, Any]) -> Any:
    def replay(resolve: Any, source: Any, info: Any, **args: Any) -> Any:
        if info.path.prev is not None:
            return resolve(source, info, **args)
        if info.path.key not in roots:
            raise RuntimeError(f"{info.path.key}: not run by the compiled path")
        found = roots[info.path.key]
        if isinstance(found, Exception):
            raise found
        return found

    return replay


def _encoded(result: ExecutionResult) -> bytes:
    errors = [
        {**e.formatted, "original": type(e.original_error).__name__} for e in result.errors or ()
    ]
    return orjson.dumps({"data": result.data, "errors": errors}, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, GraphQLError):
        return value.formatted
    return repr(value)
