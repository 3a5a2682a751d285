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
from collections.abc import AsyncIterable, Awaitable, Callable
from enum import Enum
from keyword import iskeyword
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo, located_error
from graphql.execution import ExecutionResult
from graphql.execution.executor import Executor, invalid_return_type_error
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, is_iterable
from strawberry.types.arguments import convert_arguments
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
        "lazy",
        "memos",
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
        # a batched field's parents, their positions, its info and arguments, for the round
        self.groups: dict[FieldPlan, tuple[list[Any], list[Pos], Any, Any, dict[str, Any]]] = {}
        self.args: dict[FieldPlan, dict[str, Any] | Exception] = {}
        self.fresh_args: set[FieldPlan] = set()
        self.is_awaitable = executor.is_awaitable
        self.is_async_iterable = executor.is_async_iterable
        self.plain_types: set[type] = set()  # list items' types seen not to be awaitable
        self.roots: dict[str, Any] | None = None  # differential mode: root fields' values
        self.lazy: Pos | None = None  # the position a generated walk made last
        # per pure plan: the results of values completed with no position made, by identity
        self.memos: dict[ObjectPlan, dict[int, tuple[Any, dict[str, Any]]]] = {}
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
        if fields is plan.fields:  # the whole selection: its generated walk
            return (plan.fill or fill_of(plan))(self, out, source, pos, 0, 0, 0, 0, 0)
        type_name = plan.type_name
        for f in fields:  # a mutation's root fields, one at a time
            if f.kind == ATTR:
                try:
                    value = getattr(source, f.attr)
                except Exception as error:
                    out[f.key] = self.attr_error(f, error, out, pos, type_name)
                    continue
                out[f.key] = self.attr_value(f, value, out, pos, type_name)
            elif f.kind == TYPENAME:
                out[f.key] = type_name
            else:
                self.resolve_field(f, out, source, pos, type_name)
        return out

    def attr_error(
        self, f: FieldPlan, error: Exception, out: dict[str, Any], pos: Pos | None, type_name: str
    ) -> Any:
        """Reading a plain attribute raised: the field's error."""
        fpos = Pos(pos, f.key, type_name, out, not f.non_null)
        return self.error_at(f, f.completer, error, fpos)  # type: ignore[arg-type]

    def attr_value(
        self, f: FieldPlan, value: Any, out: dict[str, Any], pos: Pos | None, type_name: str
    ) -> Any:
        """A plain attribute's value, completed (a generated walk inlines the common cases)."""
        leaf = f.leaf
        if leaf:
            kind_of = type(value)
            if leaf == STRING:
                if kind_of is str:
                    return value
            elif leaf == INT:
                if kind_of is int and _MIN_INT <= value <= _MAX_INT:
                    return value
            elif leaf == BOOLEAN:
                if kind_of is bool:
                    return value
            elif leaf == FLOAT and kind_of is float and value - value == 0.0:
                return value  # finite: inf - inf and nan - nan are nan
        c: Completer = f.completer  # type: ignore[assignment]
        if type(value) not in self.plain_types:
            if self.is_awaitable(value):  # graphql-core awaits what an attribute holds
                fpos = Pos(pos, f.key, type_name, out, not c.non_null)
                self.pending.append((value, f, c, fpos, None))
                return None  # placed when the round settles
            self.plain_types.add(type(value))
        if c.kind == LEAF:
            try:
                return self.leaf(f, c, value)
            except Exception as error:
                return self.error_at(f, c, error, Pos(pos, f.key, type_name, out, not c.non_null))
        fpos = Pos(pos, f.key, type_name, out, not c.non_null)
        return self.complete_at(f, c, value, fpos, None)

    def resolve_field(
        self, f: FieldPlan, out: dict[str, Any], source: Any, pos: Pos | None, type_name: str
    ) -> None:
        """A field with a resolver: called now, or its parent joins the round's batch."""
        key = f.key
        if f.batch is not None:
            fpos = Pos(pos, key, type_name, out, not f.non_null)
            group = self.groups.get(f)
            if group is None:
                info = self.info(f, fpos)
                strawberry_info = StrawberryInfo(_raw_info=info, _field=f.strawberry_field)
                try:  # now, as graphql-core coerces a field's arguments before its call
                    kwargs = self.batch_arguments(f, strawberry_info)
                except Exception as error:
                    out[key] = self.error_at(f, f.completer, error, fpos)  # type: ignore[arg-type]
                    return
                self.groups[f] = ([source], [fpos], info, strawberry_info, kwargs)
            else:
                group[0].append(source)
                group[1].append(fpos)
            out[key] = None  # placed when the round settles
            return
        c: Completer = f.completer  # type: ignore[assignment]
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
            return
        if pos is None and self.roots is not None and not self.is_awaitable(value):
            self.roots[key] = value
        if self.is_awaitable(value):
            out[key] = None
            self.pending.append((value, f, c, fpos, info))
            return
        out[key] = self.complete_at(f, c, value, fpos, info)

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
                    if fits and type(value) in self.plain_types:
                        plan.direct[type(value)] = True
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
        elif type(value) in self.plain_types:
            plan.direct[type(value)] = True
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
        if item.kind == OBJECT:  # values already seen to fit: straight to the generated walk
            child: ObjectPlan = item.plan  # type: ignore[assignment]
            direct = child.direct
            cast = child.is_type_of is not None
            fill = child.fill or fill_of(child)
            # a value met again (shared records, a skill many athletes hold) that completed
            # without making a position the first time completes to the same dict: kept with
            # the value, so its id stays its own for the execution
            memo = self.memos.setdefault(child, {}) if child.pure else None
            for index, entry in enumerate(value):
                if memo is not None:
                    seen = memo.get(id(entry))
                    if seen is not None and (
                        not cast or getattr(entry, TYPE_CAST_ATTRIBUTE, None) is None
                    ):
                        append(seen[1])
                        continue
                if direct.get(type(entry)) and (
                    not cast or getattr(entry, TYPE_CAST_ATTRIBUTE, None) is None
                ):
                    append(None)
                    before = self.lazy  # kept: an enclosing item may look for its own in it
                    try:
                        out = fill(self, {}, entry, LAZY, pos, index, None, result, nullable)
                    except Exception as error:
                        ipos = self.item_pos(pos, index, result, nullable)
                        result[index] = self.error_at(f, item, error, ipos)
                        continue
                    result[index] = out
                    if memo is not None and self.lazy is before:  # its walk made no position
                        memo[id(entry)] = (entry, out)
                    continue
                append(None)
                self.item(f, item, entry, Pos(pos, index, None, result, nullable), info)
            return result
        for index, entry in enumerate(value):
            append(None)
            self.item(f, item, entry, Pos(pos, index, None, result, nullable), info)
        return result

    def item(
        self, f: FieldPlan, c: Completer, entry: Any, pos: Pos, info: GraphQLResolveInfo[Any] | None
    ) -> None:
        """A list item the general way, into its place (`pos`): awaited with the round when it
        is awaitable, else completed now."""
        if type(entry) not in self.plain_types:
            if self.is_awaitable(entry):
                self.pending.append((entry, f, c, pos, info))
                return
            self.plain_types.add(type(entry))
        try:
            pos.container[pos.key] = self.complete(f, c, entry, pos, info)
        except Exception as error:
            pos.container[pos.key] = self.error_at(f, c, error, pos)

    def item_pos(self, pos: Pos, index: int, items: Any, nullable: bool) -> Pos:
        """A list item's position after its generated walk raised: the one the walk made, if it
        made one (errors and work below it may hold it), else a new one."""
        made = self.lazy
        while made is not None:
            if made.container is items and made.key == index:
                return made
            made = made.prev
        return Pos(pos, index, None, items, nullable)

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
        for f, (parents, positions, info, strawberry_info, kwargs) in groups.items():
            call = _batched(f, parents, strawberry_info, kwargs)
            self.pending.append((call, f, f.completer, positions, info))  # type: ignore[arg-type]

    def batch_arguments(self, f: FieldPlan, info: StrawberryInfo[Any, Any]) -> dict[str, Any]:
        """A batched field's arguments as its resolver receives them: coerced (once per
        execution), then converted by Strawberry (input types, enums, Python names), as its
        resolver wrapper converts them per call. The same for every parent of the field: they
        come from the document and the operation's variables. Kept on the plan when they read
        no variable and hold nothing mutable."""
        if f.batch_kwargs is not None:
            return f.batch_kwargs
        coerced = self.arguments(f)
        if not coerced:
            return {}
        schema = info.schema
        kwargs = convert_arguments(
            coerced,
            f.strawberry_field.arguments,
            scalar_registry=schema.schema_converter.scalar_registry,
            config=schema.config,
            info=info,
        )
        if not f.uses_variables and _immutable(kwargs):
            f.batch_kwargs = kwargs  # passed as **kwargs: each call gets its own dict
        return kwargs

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


async def _batched(
    f: FieldPlan, parents: list[Any], info: Any, kwargs: dict[str, Any]
) -> list[Any] | Exception:
    values = await f.batch(parents, info, **kwargs)  # type: ignore[misc]
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


# ------------------------------------------------------------------------- generated walks
_LEAF_TEST = {
    STRING: "type(v{d}) is str",
    INT: f"type(v{{d}}) is int and {_MIN_INT} <= v{{d}} <= {_MAX_INT}",
    BOOLEAN: "type(v{d}) is bool",
    FLOAT: "type(v{d}) is float and v{d} - v{d} == 0.0",  # finite: inf - inf and nan is nan
}
LAZY = object()  # a position not made yet: a generated walk makes it when it needs it
_INLINE_DEPTH = 4  # objects below an object written into its walk, at most
_INLINE_FIELDS = 48  # fields written into one walk, at most


def fill_of(plan: ObjectPlan) -> Callable[..., dict[str, Any]]:
    """The walk of an object's selection as one generated function,
    `fill(run, out0, source0, pos0, pp, pk, pt, pc, pn)`.

    A plain attribute is read inline and, when it is a builtin scalar of the right Python type,
    placed without a call; an object value of a class already seen to fit is walked inline
    when its selection is all plain attributes (a few levels down), else by its own walk.
    Anything else goes through the Run's methods, which the interpreter uses too.

    Positions are made only when something needs one (a resolver, an error, a value that is
    not plain): `pos0` is the object's position, or LAZY with its parts (pp, pk, pt, pc, pn:
    Pos's arguments) when the caller has not made it. A position is made once and kept in
    the walk's variables, so an error and the work below it meet the same Pos; the last one
    made is also left in `run.lazy`, where a list finds its item's (`Run.item_pos`)."""
    gen = _Walk(plan)
    gen.line(0, "def fill(run, out0, source0, pos0, pp, pk, pt, pc, pn):")
    gen.object(plan, 0, 1)
    gen.line(1, "return out0")
    fill: Callable[..., dict[str, Any]] = gen.build()["fill"]
    plan.pure = gen.pure
    plan.fill = fill
    return fill


class _Walk:
    """Writes one generated walk."""

    def __init__(self, plan: ObjectPlan) -> None:
        self.plan = plan
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"Pos": Pos, "CAST": TYPE_CAST_ATTRIBUTE, "LAZY": LAZY}
        self.names["fill_of"] = fill_of
        self.budget = _INLINE_FIELDS
        self.pure = True  # no call out of the walk on its fast paths
        # per depth: how that depth's position is made (Pos's arguments), the root's given
        self.made: list[str] = ["pp, pk, pt, pc, pn"]

    def line(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def name(self, value: Any, prefix: str) -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def build(self) -> dict[str, Any]:
        source = "\n".join(self.lines)
        code = compile(source, f"<walk {self.plan.type_name}>", "exec")
        exec(code, self.names)
        return self.names

    def position(self, depth: int, indent: int) -> None:
        """Make the positions down to `depth` that are not made yet."""
        for d in range(depth + 1):
            self.line(indent, f"if pos{d} is LAZY:")
            self.line(indent + 1, f"pos{d} = run.lazy = Pos({self.made[d]})")

    def inlinable(self, plan: ObjectPlan, depth: int) -> bool:
        if depth >= _INLINE_DEPTH or len(plan.fields) > self.budget:
            return False
        for f in plan.fields:
            if f.kind == TYPENAME:
                continue
            if f.kind != ATTR:
                return False
        return True

    def object(self, plan: ObjectPlan, d: int, i: int) -> None:
        """The fields of `plan` read from source{d} into out{d}, at indent i."""
        tn = self.name(plan.type_name, "T")
        out, src, v = f"out{d}", f"source{d}", f"v{d}"
        self.budget -= len(plan.fields)
        for f in plan.fields:
            fn = self.name(f, "F")
            key = repr(f.key)  # a GraphQL name: ASCII letters, digits and underscores
            if f.kind == TYPENAME:
                self.line(i, f"{out}[{key}] = {tn}")
                continue
            if f.kind != ATTR:
                self.pure = False
                self.position(d, i)
                self.line(i, f"run.resolve_field({fn}, {out}, {src}, pos{d}, {tn})")
                continue
            if f.attr.isidentifier() and f.attr.isascii() and not iskeyword(f.attr):
                read = f"{src}.{f.attr}"
            else:
                read = f"getattr({src}, {self.name(f.attr, 'A')})"
            self.line(i, "try:")
            self.line(i + 1, f"{v} = {read}")
            self.line(i, "except Exception as e:")
            self.position(d, i + 1)
            self.line(i + 1, f"{out}[{key}] = run.attr_error({fn}, e, {out}, pos{d}, {tn})")
            self.line(i, "else:")
            c: Completer = f.completer  # type: ignore[assignment]
            child = c.plan if c.kind == OBJECT else None
            if f.leaf:
                self.line(i + 1, f"if {_LEAF_TEST[f.leaf].format(d=d)}:")
                self.line(i + 2, f"{out}[{key}] = {v}")
            elif child is not None:
                fits = f"{self.name(child.direct, 'D')}.get(type({v}))"
                if child.is_type_of is not None:
                    fits += f" and getattr({v}, CAST, None) is None"
                self.line(i + 1, f"if {fits}:")
                cn, nullable = self.name(c, "C"), not c.non_null
                if self.inlinable(child, d + 1):
                    e = d + 1
                    self.made[e:] = [f"pos{d}, {key}, {tn}, {out}, {nullable}"]
                    self.line(i + 2, f"pos{e} = LAZY")
                    self.line(i + 2, "try:")
                    self.line(i + 3, f"out{e} = {{}}")
                    self.line(i + 3, f"source{e} = {v}")
                    self.object(child, e, i + 3)
                    self.line(i + 3, f"{out}[{key}] = out{e}")
                    self.line(i + 2, "except Exception as e:")
                    self.position(e, i + 3)
                    self.line(i + 3, f"{out}[{key}] = run.error_at({fn}, {cn}, e, pos{e})")
                else:
                    self.pure = False
                    pn = self.name(child, "P")
                    self.position(d, i + 2)
                    self.line(i + 2, f"p = Pos(pos{d}, {key}, {tn}, {out}, {nullable})")
                    self.line(i + 2, "try:")
                    walk = f"({pn}.fill or fill_of({pn}))"
                    self.line(i + 3, f"{out}[{key}] = {walk}(run, {{}}, {v}, p, 0, 0, 0, 0, 0)")
                    self.line(i + 2, "except Exception as e:")
                    self.line(i + 3, f"{out}[{key}] = run.error_at({fn}, {cn}, e, p)")
            else:
                self.pure = False
                self.position(d, i + 1)
                self.line(i + 1, f"{out}[{key}] = run.attr_value({fn}, {v}, {out}, pos{d}, {tn})")
                continue
            self.line(i + 1, "else:")
            self.position(d, i + 2)
            self.line(i + 2, f"{out}[{key}] = run.attr_value({fn}, {v}, {out}, pos{d}, {tn})")
