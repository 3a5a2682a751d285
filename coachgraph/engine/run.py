"""Executing a plan: plain dicts, resolvers only where the schema has them, async work awaited
together, a round at a time.

The walk is graphql-core's, without its per-field machinery: synchronous fields complete
depth-first as they are met (a plain attribute is one getattr, and a builtin scalar of the
right Python type is its own serialisation); a resolver's awaitable joins the round's
pending work, and the whole round is awaited at once, so every DataLoader of a level batches
all the parents of that level. Then each result completes in the order graphql-core records
it, which may add the next round.

Errors follow graphql-core: located at the innermost position, raised through non-null
positions to the nearest nullable one, recorded there unless an ancestor was nulled before
(graphql-core's CollectedErrors, used as is), and work below a nulled position is dropped.
A position (Pos) knows where its value sits (the dict or list holding it), so an error found
in a later round nulls the right ancestor after its dict was already placed.
"""

from __future__ import annotations

import contextlib
from asyncio import gather
from collections.abc import AsyncIterable, Awaitable
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo, located_error
from graphql.execution import ExecutionResult
from graphql.execution.executor import Executor, invalid_return_type_error
from graphql.execution.values import get_argument_values
from graphql.pyutils import Undefined, is_iterable
from strawberry.types.info import Info as StrawberryInfo

from .plan import (
    ABSTRACT,
    ATTR,
    BOOLEAN,
    FLOAT,
    INT,
    LEAF,
    LIST,
    OBJECT,
    STRING,
    TYPENAME,
    Completer,
    FieldPlan,
    ObjectPlan,
    Plan,
)

_MIN_INT, _MAX_INT = -(2**31), 2**31 - 1


class Pos:
    """A response position: graphql-core's Path (prev, key, typename), plus where the value
    sits and whether null may stand there."""

    __slots__ = ("container", "key", "nullable", "prev", "typename")

    def __init__(
        self, prev: Pos | None, key: str | int, typename: str | None, container: Any, nullable: bool
    ) -> None:
        self.prev = prev
        self.key = key
        self.typename = typename
        self.container = container
        self.nullable = nullable

    def add_key(self, key: str | int, typename: str | None = None) -> Pos:
        return Pos(self, key, typename, None, True)

    def as_list(self) -> list[str | int]:
        keys: list[str | int] = []
        pos: Pos | None = self
        while pos is not None:
            keys.append(pos.key)
            pos = pos.prev
        keys.reverse()
        return keys


Pending = tuple[Awaitable[Any], FieldPlan, Completer, Pos, GraphQLResolveInfo[Any] | None]


class Run:
    """One execution of a plan."""

    __slots__ = (
        "args",
        "errors",
        "groups",
        "info_tail",
        "is_async_iterable",
        "is_awaitable",
        "pending",
        "plain_types",
        "roots",
        "x",
    )

    def __init__(self, executor: Executor[Any]) -> None:
        self.x = executor
        self.errors = executor.collected_errors
        self.pending: list[Pending] = []
        # batched fields of this round: per field, its parents and their positions
        self.groups: dict[FieldPlan, tuple[list[Any], list[Pos], GraphQLResolveInfo[Any]]] = {}
        self.args: dict[FieldPlan, dict[str, Any] | Exception] = {}
        self.is_awaitable = executor.is_awaitable
        self.is_async_iterable = executor.is_async_iterable
        self.plain_types: set[type] = set()  # list items' types seen not to be awaitable
        self.roots: dict[str, Any] | None = None  # differential mode: root fields' values
        self.info_tail = (
            executor.schema,
            executor.fragment_definitions,
            executor.root_value,
            executor.operation,
            executor.variable_values,
            executor.context_value,
            executor.is_awaitable,
            executor.abort_signal,
            executor.async_helpers,
        )

    # ------------------------------------------------------------------------------ fields
    def fields(
        self,
        out: dict[str, Any],
        plan: ObjectPlan,
        fields: tuple[FieldPlan, ...],
        source: Any,
        pos: Pos | None,
    ) -> dict[str, Any]:
        type_name = plan.type_name
        for f in fields:
            kind = f.kind
            key = f.key
            if kind == ATTR:
                try:
                    value = getattr(source, f.attr)
                except Exception as error:
                    fpos = Pos(pos, key, type_name, out, not f.non_null)
                    out[key] = self.error_at(f, f.completer, error, fpos)  # type: ignore[arg-type]
                    continue
                leaf = f.leaf
                if leaf:
                    kind_of = type(value)
                    if leaf == STRING:
                        if kind_of is str:
                            out[key] = value
                            continue
                    elif leaf == INT:
                        if kind_of is int and _MIN_INT <= value <= _MAX_INT:
                            out[key] = value
                            continue
                    elif leaf == BOOLEAN:
                        if kind_of is bool:
                            out[key] = value
                            continue
                    elif leaf == FLOAT and kind_of is float and value - value == 0.0:
                        out[key] = value  # finite: inf - inf and nan - nan are nan
                        continue
                c: Completer = f.completer  # type: ignore[assignment]
                if c.kind == LEAF:
                    try:
                        out[key] = self.leaf(f, c, value)
                    except Exception as error:
                        out[key] = self.error_at(
                            f, c, error, Pos(pos, key, type_name, out, not c.non_null)
                        )
                    continue
                fpos = Pos(pos, key, type_name, out, not c.non_null)
                out[key] = self.complete_at(f, c, value, fpos, None)
            elif kind == TYPENAME:
                out[key] = type_name
            elif f.batch is not None:
                fpos = Pos(pos, key, type_name, out, not f.non_null)
                out[key] = None  # placed when the round settles
                group = self.groups.get(f)
                if group is None:
                    self.groups[f] = ([source], [fpos], self.info(f, fpos))
                else:
                    group[0].append(source)
                    group[1].append(fpos)
            else:
                c = f.completer  # type: ignore[assignment]
                fpos = Pos(pos, key, type_name, out, not c.non_null)
                info = GraphQLResolveInfo(
                    f.name,
                    f.nodes,
                    f.return_type,  # type: ignore[arg-type]
                    f.parent_type,
                    fpos,  # type: ignore[arg-type]
                    *self.info_tail,
                )
                try:
                    args = f.args if f.args is not None else self.arguments(f)
                    value = f.resolve(source, info, **args)  # type: ignore[misc]
                except Exception as error:
                    if pos is None and self.roots is not None:
                        self.roots[key] = error
                    out[key] = self.error_at(f, c, error, fpos)
                    continue
                if pos is None and self.roots is not None and not self.is_awaitable(value):
                    self.roots[key] = value
                if self.is_awaitable(value):
                    out[key] = None
                    self.pending.append((value, f, c, fpos, info))
                    continue
                out[key] = self.complete_at(f, c, value, fpos, info)
        return out

    def arguments(self, f: FieldPlan) -> dict[str, Any]:
        """The field's coerced arguments: once per execution (variables are fixed), once per
        plan when the arguments read no variable. A coercion error is the field's error."""
        found = self.args.get(f)
        if found is None:
            if f.field_def is None or not (f.field_def.args or f.nodes[0].arguments):
                found = {}
            else:
                try:
                    found = get_argument_values(
                        f.field_def,
                        f.nodes[0],
                        self.x.variable_values,
                        None,
                        self.x.hide_suggestions,
                    )
                except Exception as error:
                    found = error
            self.args[f] = found
            if not f.uses_variables and isinstance(found, dict):
                f.args = found
        if isinstance(found, Exception):
            raise found
        return found

    # -------------------------------------------------------------------------- completion
    def complete_at(
        self, f: FieldPlan, c: Completer, value: Any, pos: Pos, info: GraphQLResolveInfo[Any] | None
    ) -> Any:
        try:
            return self.complete(f, c, value, pos, info)
        except Exception as error:
            return self.error_at(f, c, error, pos)

    def error_at(self, f: FieldPlan, c: Completer, error: Exception, pos: Pos) -> Any:
        """graphql-core's handle_field_error: raise through a non-null position, else record
        the error here and stand null."""
        located = located_error(error, f.nodes, pos.as_list())
        if c.non_null:
            raise located
        self.errors.add(located, pos)  # type: ignore[arg-type]
        return None

    def complete(
        self, f: FieldPlan, c: Completer, value: Any, pos: Pos, info: GraphQLResolveInfo[Any] | None
    ) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            if c.non_null:
                raise TypeError(
                    f"Cannot return null for non-nullable field {f.parent_type.name}.{f.name}."
                )
            return None
        kind = c.kind
        if kind == LEAF:
            return self.leaf(f, c, value)
        if kind == OBJECT:
            return self.object(f, c.plan, value, pos, info)  # type: ignore[arg-type]
        if kind == LIST:
            return self.list(f, c, value, pos, info)
        assert kind == ABSTRACT
        info = info or self.info(f, pos)
        abstract: Any = c.type
        resolve_type = abstract.resolve_type or self.x.type_resolver
        runtime = resolve_type(value, info, abstract)
        if self.is_awaitable(runtime):
            _close(runtime)
            raise TypeError(f"{abstract.name}: an async resolve_type is not compiled")
        runtime_type = self.x.ensure_valid_runtime_type(runtime, abstract, f.details, info, value)
        return self.object(f, c.plans[runtime_type.name], value, pos, info)

    def object(
        self,
        f: FieldPlan,
        plan: ObjectPlan,
        value: Any,
        pos: Pos,
        info: GraphQLResolveInfo[Any] | None,
    ) -> dict[str, Any]:
        is_type_of = plan.is_type_of
        if is_type_of is not None:
            if plan.plain_is_type_of:
                if not is_type_of(value, None):
                    raise invalid_return_type_error(plan.type, value, f.details)
                return self.fields({}, plan, plan.fields, value, pos)
            fits = is_type_of(value, info or self.info(f, pos))
            if self.is_awaitable(fits):
                _close(fits)
                raise TypeError(f"{plan.type_name}: an async is_type_of is not compiled")
            if not fits:
                raise invalid_return_type_error(plan.type, value, f.details)
        return self.fields({}, plan, plan.fields, value, pos)

    def list(
        self, f: FieldPlan, c: Completer, value: Any, pos: Pos, info: GraphQLResolveInfo[Any] | None
    ) -> list[Any] | None:
        kind_of = type(value)
        if kind_of is not list and kind_of is not tuple:
            if self.is_async_iterable(value):
                self.pending.append((_collect(value), f, c, pos, info))
                return None  # placed when the round settles
            if not is_iterable(value):
                raise GraphQLError(
                    "Expected Iterable, but did not find one for field"
                    f" '{f.parent_type.name}.{f.name}'."
                )
        item: Completer = c.item  # type: ignore[assignment]
        result: list[Any] = []
        append = result.append
        nullable = not item.non_null
        is_awaitable = self.is_awaitable
        if item.kind == LEAF:
            fast = item.fast
            for index, entry in enumerate(value):
                if fast == STRING and type(entry) is str:
                    append(entry)
                    continue
                if is_awaitable(entry):
                    append(None)
                    self.pending.append(
                        (entry, f, item, Pos(pos, index, None, result, nullable), info)
                    )
                    continue
                try:
                    append(self.leaf(f, item, entry))
                except Exception as error:
                    append(self.error_at(f, item, error, Pos(pos, index, None, result, nullable)))
            return result
        plain = self.plain_types
        for index, entry in enumerate(value):
            ipos = Pos(pos, index, None, result, nullable)
            append(None)
            if type(entry) not in plain:
                if is_awaitable(entry):
                    self.pending.append((entry, f, item, ipos, info))
                    continue
                plain.add(type(entry))
            try:
                result[index] = self.complete(f, item, entry, ipos, info)
            except Exception as error:
                result[index] = self.error_at(f, item, error, ipos)
        return result

    def leaf(self, f: FieldPlan, c: Completer, value: Any) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            if c.non_null:
                raise TypeError(
                    f"Cannot return null for non-nullable field {f.parent_type.name}.{f.name}."
                )
            return None
        memo = c.memo
        if memo is not None:
            try:
                return memo[value]
            except (KeyError, TypeError):
                pass
        coerced = c.coerce(value)  # type: ignore[misc]
        if coerced is Undefined or coerced is None:
            Executor.complete_leaf_value(c.type, value)  # type: ignore[arg-type]  # its words
        if memo is not None and len(memo) < 256:
            with contextlib.suppress(TypeError):
                memo[value] = coerced
        return coerced

    def info(self, f: FieldPlan, pos: Pos) -> GraphQLResolveInfo[Any]:
        return GraphQLResolveInfo(
            f.name,
            f.nodes,
            f.return_type,  # type: ignore[arg-type]
            f.parent_type,
            pos,  # type: ignore[arg-type]
            *self.info_tail,
        )

    # ------------------------------------------------------------------------------ rounds
    async def drain(self) -> None:
        """Await the pending work a round at a time until none is left."""
        while self.pending or self.groups:
            if self.groups:
                self._batches()
            batch, self.pending = self.pending, []
            values: list[Any]
            if len(batch) == 1:
                try:
                    values = [await batch[0][0]]
                except Exception as error:
                    values = [error]
            else:
                values = await gather(*[entry[0] for entry in batch], return_exceptions=True)
            for entry, value in zip(batch, values, strict=True):
                if isinstance(value, BaseException) and not isinstance(value, Exception):
                    raise value
                self.settle(entry, value)

    def _batches(self) -> None:
        """One awaitable per batched field of the round, for all its parents, in the order
        their fields were met."""
        groups, self.groups = self.groups, {}
        for f, (parents, positions, info) in groups.items():
            call = _batched(f, parents, StrawberryInfo(_raw_info=info, _field=f.strawberry_field))
            self.pending.append((call, f, f.completer, positions, info))  # type: ignore[arg-type]

    def settle(self, entry: Pending, value: Any) -> None:
        if isinstance(entry[3], list):  # a batched field: one value (or error) per parent
            _call, f, c, positions, info = entry
            values = value if isinstance(value, list) else [value] * len(positions)
            for pos, item in zip(positions, values, strict=True):
                self.settle((_call, f, c, pos, info), item)
            return
        _awaitable, f, c, pos, info = entry
        if pos.prev is None and self.roots is not None and isinstance(pos.key, str):
            self.roots[pos.key] = value
        errors = self.errors
        if errors.errors and errors.has_nulled_position(pos):  # type: ignore[arg-type]
            return  # graphql-core cancels what an error has already nulled
        try:
            completed = self.complete(f, c, value, pos, info)
        except Exception as error:
            located = located_error(error, f.nodes, pos.as_list())
            if not c.non_null:
                errors.add(located, pos)  # type: ignore[arg-type]
                pos.container[pos.key] = None
                return
            self.propagate(located, pos.prev)
            return
        pos.container[pos.key] = completed

    def propagate(self, error: GraphQLError, pos: Pos | None) -> None:
        """Null the nearest nullable position at or above `pos` (the whole data at the top)."""
        while pos is not None and not pos.nullable:
            pos = pos.prev
        if pos is not None:
            pos.container[pos.key] = None
        self.errors.add(error, pos)  # type: ignore[arg-type]


async def _batched(f: FieldPlan, parents: list[Any], info: Any) -> list[Any] | Exception:
    values = await f.batch(parents, info)  # type: ignore[misc]
    if not isinstance(values, list) or len(values) != len(parents):
        raise TypeError(f"{f.parent_type.name}.{f.name}: __batch__ must return one value a parent")
    return values


def _close(awaitable: object) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # a coroutine never awaited would warn


async def _collect(values: AsyncIterable[Any]) -> list[Any]:
    return [value async for value in values]


def execute(
    executor: Executor[Any], plan: Plan, roots: dict[str, Any] | None = None
) -> ExecutionResult | Awaitable[ExecutionResult]:
    """The operation's result, as graphql-core's execute_operation gives it; `roots`, when
    given, receives each root field's resolved value (or error)."""
    run = Run(executor)
    run.roots = roots
    root = plan.root
    if plan.serial:
        return _serially(run, executor, root)
    data: dict[str, Any] = {}
    try:
        run.fields(data, root, root.fields, executor.root_value, None)
    except GraphQLError as error:  # a non-null root field: the whole data is null
        executor.collected_errors.add(error, None)
    if not run.pending and not run.groups:
        return _response(executor, data)
    return _after_rounds(run, executor, data)


def _response(executor: Executor[Any], data: dict[str, Any]) -> ExecutionResult:
    nulled = None in executor.collected_errors._error_positions
    return executor.build_response(None if nulled else data)  # type: ignore[return-value]


async def _after_rounds(run: Run, executor: Executor[Any], data: dict[str, Any]) -> ExecutionResult:
    await run.drain()
    return _response(executor, data)


async def _serially(run: Run, executor: Executor[Any], root: ObjectPlan) -> ExecutionResult:
    """Mutations: each root field and everything below it before the next root field."""
    data: dict[str, Any] = {}
    for f in root.fields:
        try:
            run.fields(data, root, (f,), executor.root_value, None)
        except GraphQLError as error:
            executor.collected_errors.add(error, None)
        await run.drain()
        if None in executor.collected_errors._error_positions:
            break
    return _response(executor, data)
