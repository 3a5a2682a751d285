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
from enum import Enum
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo, located_error
from graphql.execution import ExecutionResult
from graphql.execution.executor import Executor, invalid_return_type_error
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, is_iterable
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE
from strawberry.types.info import Info as StrawberryInfo

from .plan import (
    ATTR,
    BOOLEAN,
    CHECKED,
    FLOAT,
    INT,
    LEAF,
    LIST,
    OBJECT,
    RESOLVED,
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

    __slots__ = ("container", "key", "nullable", "path", "prev", "typename")

    def __init__(
        self, prev: Pos | None, key: str | int, typename: str | None, container: Any, nullable: bool
    ) -> None:
        self.prev = prev
        self.key = key
        self.typename = typename
        self.container = container
        self.nullable = nullable
        self.path: Path | None = None

    def as_path(self) -> Path:
        """graphql-core's Path of this position (what resolvers see as info.path)."""
        if self.path is None:
            self.path = Path(
                None if self.prev is None else self.prev.as_path(), self.key, self.typename
            )
        return self.path

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
        "awaited",
        "error_events",
        "errors",
        "fresh_args",
        "groups",
        "info_class",
        "info_tail",
        "is_async_iterable",
        "is_awaitable",
        "pending",
        "plain_types",
        "roots",
        "x",
    )

    def __init__(self, executor: Executor[Any], plan: Plan) -> None:
        self.x = executor
        self.error_events = 0  # errors met, recorded or not, and work dropped under a null
        self.awaited = False
        self.errors = executor.collected_errors
        self.pending: list[Pending] = []
        # batched fields of this round: per field, its parents and their positions
        self.groups: dict[FieldPlan, tuple[list[Any], list[Pos], GraphQLResolveInfo[Any]]] = {}
        self.args: dict[FieldPlan, dict[str, Any] | Exception] = {}
        self.fresh_args: set[FieldPlan] = set()
        self.is_awaitable = executor.is_awaitable
        self.is_async_iterable = executor.is_async_iterable
        self.plain_types: set[type] = set()  # list items' types seen not to be awaitable
        self.roots: dict[str, Any] | None = None  # differential mode: root fields' values
        # resolvers get what the executor's own build_resolve_info gives (Strawberry's adds
        # the operation's extensions): its class, and the fields that are the same for all
        probe = next((f for f in plan.root.fields if f.field_def is not None), None)
        self.info_class: Any = GraphQLResolveInfo
        self.info_tail: tuple[Any, ...] = (
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
        if probe is not None:
            info = executor.build_resolve_info(
                probe.field_def,  # type: ignore[arg-type]
                probe.nodes,
                probe.parent_type,
                None,  # type: ignore[arg-type]
            )
            self.info_class = type(info)
            self.info_tail = tuple(info)[5:]

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
                if type(value) not in self.plain_types:
                    if self.is_awaitable(value):  # graphql-core awaits what an attribute holds
                        fpos = Pos(pos, key, type_name, out, not c.non_null)
                        out[key] = None
                        self.pending.append((value, f, c, fpos, None))
                        continue
                    self.plain_types.add(type(value))
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
                info = self.info_class(
                    f.name, f.nodes, f.return_type, f.parent_type, fpos.as_path(), *self.info_tail
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
        if found is not None and f in self.fresh_args:
            found = None  # mutable values: each call gets its own, as from graphql-core
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
            if isinstance(found, dict):
                if not _immutable(found):
                    self.fresh_args.add(f)
                elif not f.uses_variables:
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
        self.error_events += 1
        self.errors.add(located, pos)  # type: ignore[arg-type]
        return None

    def complete(
        self, f: FieldPlan, c: Completer, value: Any, pos: Pos, info: GraphQLResolveInfo[Any] | None
    ) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            return _null(f, c)
        kind = c.kind
        if kind == LEAF:
            return self.coerce(c, value)
        if kind == OBJECT:
            return self.object(f, c.plan, value, pos, info)  # type: ignore[arg-type]
        if kind == LIST:
            return self.list(f, c, value, pos, info)
        if kind == CHECKED:  # an async is_type_of settled: value is (its answer, the value)
            fits, value = value
            plan: ObjectPlan = c.plan  # type: ignore[assignment]
            if not fits:
                raise invalid_return_type_error(plan.type, value, f.details)
            return self.fields({}, plan, plan.fields, value, pos)
        info = info or self.info(f, pos)
        abstract: Any = c.type
        if kind == RESOLVED:  # an async resolve_type settled: value is (its answer, the value)
            runtime, value = value
        else:
            resolve_type = abstract.resolve_type or self.x.type_resolver
            runtime = resolve_type(value, info, abstract)
            if self.is_awaitable(runtime):  # settled with the round, then completed as here
                self.pending.append((_pair(runtime, value), f, c.resolved, pos, info))  # type: ignore[arg-type]
                return None  # placed when the round settles
        runtime_type = self.x.ensure_valid_runtime_type(runtime, abstract, f.details, info, value)
        return self.object(f, c.plans[runtime_type.name], value, pos, info)

    def object(
        self,
        f: FieldPlan,
        plan: ObjectPlan,
        value: Any,
        pos: Pos,
        info: GraphQLResolveInfo[Any] | None,
    ) -> dict[str, Any] | None:
        is_type_of = plan.is_type_of
        if is_type_of is not None:
            if plan.plain_is_type_of:
                # Strawberry's answer depends on the value's class alone unless the value was
                # cast (strawberry.cast marks the instance): remembered per class
                if getattr(value, TYPE_CAST_ATTRIBUTE, None) is None:
                    fits = plan.fits.get(type(value))
                    if fits is None:
                        fits = plan.fits[type(value)] = bool(is_type_of(value, None))
                else:
                    fits = is_type_of(value, None)
                if not fits:
                    raise invalid_return_type_error(plan.type, value, f.details)
                return self.fields({}, plan, plan.fields, value, pos)
            fits = is_type_of(value, info or self.info(f, pos))
            if self.is_awaitable(fits):  # settled with the round, then completed as here
                self.pending.append((_pair(fits, value), f, plan.checked, pos, info))
                return None  # placed when the round settles
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
        """complete() of a leaf: what the walk calls where it knows the completer is one."""
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            return _null(f, c)
        return self.coerce(c, value)

    def coerce(self, c: Completer, value: Any) -> Any:
        """A leaf value that is not null, serialised by its type (enums remembered)."""
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
        info: GraphQLResolveInfo[Any] = self.info_class(
            f.name, f.nodes, f.return_type, f.parent_type, pos.as_path(), *self.info_tail
        )
        return info

    # ------------------------------------------------------------------------------ rounds
    async def drain(self) -> None:
        """Await the pending work a round at a time until none is left."""
        while self.pending or self.groups:
            if self.groups:
                self._batches()
            batch, self.pending = self.pending, []
            self.awaited = True
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
            self.error_events += 1  # it might have failed too: which came first is timing
            return  # graphql-core cancels what an error has already nulled
        try:
            completed = self.complete(f, c, value, pos, info)
        except Exception as error:
            located = located_error(error, f.nodes, pos.as_list())
            if pos.nullable:
                self.error_events += 1
                errors.add(located, pos)  # type: ignore[arg-type]
                pos.container[pos.key] = None
                return
            self.propagate(located, pos.prev)
            return
        pos.container[pos.key] = completed

    @property
    def ambiguous(self) -> bool:
        """Two or more errors met while awaiting: which graphql-core records first, and so
        which it drops under a nulled parent, follows its own scheduling of coroutines."""
        return self.awaited and self.error_events >= 2

    def propagate(self, error: GraphQLError, pos: Pos | None) -> None:
        """Null the nearest nullable position at or above `pos` (the whole data at the top)."""
        self.error_events += 1
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


_IMMUTABLE = (str, int, float, bool, type(None), Enum)


def _immutable(value: Any) -> bool:
    if isinstance(value, _IMMUTABLE):
        return True
    if isinstance(value, dict):
        return False
    if isinstance(value, tuple | frozenset):
        return all(_immutable(v) for v in value)
    return False


def _null(f: FieldPlan, c: Completer) -> None:
    if c.non_null:
        raise TypeError(f"Cannot return null for non-nullable field {f.parent_type.name}.{f.name}.")
    return None


async def _pair(awaitable: Awaitable[Any], value: Any) -> tuple[Any, Any]:
    return await awaitable, value


async def _collect(values: AsyncIterable[Any]) -> list[Any]:
    return [value async for value in values]


def start(
    executor: Executor[Any], plan: Plan, roots: dict[str, Any] | None = None
) -> tuple[Run, ExecutionResult | Awaitable[ExecutionResult]]:
    """The run, whose counters say whether the result's errors could come out in another order
    from graphql-core (Run.ambiguous), and the operation's result as graphql-core's
    execute_operation gives it; `roots`, when given, receives each root field's resolved value
    (or error)."""
    run = Run(executor, plan)
    run.roots = roots
    root = plan.root
    if plan.serial:
        return run, _serially(run, executor, root)
    data: dict[str, Any] = {}
    try:
        run.fields(data, root, root.fields, executor.root_value, None)
    except GraphQLError as error:  # a non-null root field: the whole data is null
        run.error_events += 1
        executor.collected_errors.add(error, None)
    if not run.pending and not run.groups:
        return run, _response(executor, data)
    return run, _after_rounds(run, executor, data)


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
            run.error_events += 1
            executor.collected_errors.add(error, None)
        await run.drain()
        if None in executor.collected_errors._error_positions:
            break
    return _response(executor, data)
