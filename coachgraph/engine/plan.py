"""Plans: an operation, compiled once into what each selection does and how it serialises.

A plan is built the first time an operation (document, operation name, and the values of the
variables its @skip/@include read) is executed, with graphql-core's own field collection, so
fragments, inline fragments, aliases, merged fields and directives mean exactly what they mean
to graphql-core. What the plan settles ahead, per field: whether the field is a plain attribute
of its parent (read with getattr, no resolver call, no Info), `__typename`, or a resolver to
call; and per return type, a completer: a leaf with its coercion (and a fast path for the
builtin scalars), a list of completers, an object's plan, or an abstract type's plan for each
possible object type. Executing a plan is run.py's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from graphql import (
    DirectiveNode,
    FieldNode,
    GraphQLAbstractType,
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    Node,
    OperationType,
    VariableNode,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues

# what a field does
ATTR, TYPENAME, RESOLVE = 0, 1, 2
# what a completer completes (the last two: after an async resolve_type or is_type_of)
LEAF, LIST, OBJECT, ABSTRACT, RESOLVED, CHECKED = 0, 1, 2, 3, 4, 5
# builtin scalars whose values of one exact Python type serialise as themselves
OTHER, STRING, INT, BOOLEAN, FLOAT = 0, 1, 2, 3, 4
_FAST = {"String": STRING, "ID": STRING, "Int": INT, "Boolean": BOOLEAN, "Float": FLOAT}
# directives the compiled path implements; any other (@defer, @stream, custom) falls back
_COMPILED_DIRECTIVES = frozenset({"skip", "include"})


class NotCompiled(Exception):
    """This operation runs through graphql-core's executor; the message says why."""


class Completer:
    """How a value of one output type completes (nullability included)."""

    __slots__ = (
        "coerce",
        "fast",
        "item",
        "kind",
        "memo",
        "non_null",
        "plan",
        "plans",
        "resolved",
        "type",
    )

    def __init__(self, kind: int, non_null: bool, gql_type: GraphQLOutputType) -> None:
        self.kind = kind
        self.non_null = non_null
        self.type = gql_type  # the nullable type
        self.fast = OTHER
        self.coerce: Callable[[Any], Any] | None = None
        self.memo: dict[Any, Any] | None = None  # enums: value -> name
        self.item: Completer | None = None
        self.plan: ObjectPlan | None = None
        self.plans: dict[str, ObjectPlan] = {}
        self.resolved: Completer | None = None  # abstract: after an async resolve_type


class FieldPlan:
    """One response key of a selection set on one object type."""

    __slots__ = (
        "args",
        "attr",
        "batch",
        "batch_kwargs",
        "completer",
        "details",
        "field_def",
        "key",
        "kind",
        "leaf",
        "name",
        "nodes",
        "non_null",
        "parent_type",
        "resolve",
        "return_type",
        "strawberry_field",
        "uses_variables",
    )

    def __init__(
        self,
        key: str,
        details: list[FieldDetails],
        parent_type: GraphQLObjectType,
        field_def: GraphQLField | None,
    ) -> None:
        self.key = key
        self.details = details
        self.nodes: list[FieldNode] = [d.node for d in details]
        self.name = self.nodes[0].name.value
        self.parent_type = parent_type
        self.field_def = field_def
        self.kind = RESOLVE
        self.attr = ""
        self.resolve: Callable[..., Any] | None = None
        # the resolver's `__batch__`: (parents, info) -> one value per parent, awaited once a
        # round for every parent of the round, with the arguments its resolver takes
        self.batch: Callable[..., Any] | None = None
        # its arguments as the resolver takes them, when the same for every execution
        self.batch_kwargs: dict[str, Any] | None = None
        self.strawberry_field: Any = None
        self.return_type: GraphQLOutputType | None = None
        self.completer: Completer | None = None
        self.non_null = False
        self.leaf = OTHER  # the fast leaf kind when the completer is a builtin scalar
        self.args: dict[str, Any] | None = None  # arguments that use no variable, coerced once
        self.uses_variables = False


class ObjectPlan:
    """A selection set on one object type: its fields in response order."""

    __slots__ = (
        "checked",
        "direct",
        "fields",
        "fill",
        "fits",
        "is_type_of",
        "plain_is_type_of",
        "pure",
        "resolvers",
        "type",
        "type_name",
    )

    def __init__(self, object_type: GraphQLObjectType) -> None:
        self.type = object_type
        self.type_name = object_type.name
        self.fields: tuple[FieldPlan, ...] = ()
        self.is_type_of: Callable[..., Any] | None = object_type.is_type_of
        # Strawberry's own is_type_of (types with interfaces) is an isinstance check: it reads
        # no Info and returns a bool, so the walk calls it without building either
        self.plain_is_type_of = getattr(self.is_type_of, "__qualname__", "").endswith(
            "_get_is_type_of.<locals>.is_type_of"
        )
        self.fits: dict[type, bool] = {}  # plain is_type_of's answer per class
        # classes whose values complete as this object with no check beyond a cast's: not
        # awaitable, not an error, and is_type_of (if any) plain and true for the class
        self.direct: dict[type, bool] = {}
        # the generated walk of `fields` (run.fill_of), built the first time it is needed
        self.fill: Callable[..., dict[str, Any]] | None = None
        # set with `fill`: whether a value can complete with no call out of the walk (plain
        # attributes of builtin scalars and of objects walked inline), so that the same value
        # completes to the same result wherever it stands (Run.list shares it)
        self.pure = False
        self.resolvers = 0  # resolver fields in this selection and below
        self.checked = Completer(CHECKED, False, object_type)  # after an async is_type_of
        self.checked.plan = self


class Plan:
    """A compiled operation."""

    __slots__ = ("operation_type", "root", "serial", "shared_events")

    def __init__(self, root: ObjectPlan, operation_type: OperationType) -> None:
        self.root = root
        self.operation_type = operation_type
        self.serial = operation_type is OperationType.MUTATION
        # a subscription whose only resolver is its root field (which hands the event over):
        # an event's result depends on the event alone, not on who subscribed
        self.shared_events = operation_type is OperationType.SUBSCRIPTION and all(
            f.kind != RESOLVE or f.completer is None or _resolvers_below(f.completer) == 0
            for f in root.fields
        )


def directive_variables(definitions: Iterable[Node]) -> tuple[str, ...] | str:
    """The variables @skip/@include read in an operation and its fragments, in a stable order;
    or why it is not compiled (a directive the compiled path does not implement)."""
    names: set[str] = set()
    stack: list[Any] = list(definitions)
    while stack:
        node = stack.pop()
        for directive in getattr(node, "directives", None) or ():
            if not _directive_ok(directive, names):
                return f"directive @{directive.name.value}"
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)
        stack.extend(getattr(node, "variable_definitions", None) or ())
    return tuple(sorted(names))


def _directive_ok(directive: DirectiveNode, names: set[str]) -> bool:
    if directive.name.value not in _COMPILED_DIRECTIVES:
        return False
    for argument in directive.arguments or ():
        if isinstance(argument.value, VariableNode):
            names.add(argument.value.name.value)
    return True


class Compiler:
    """Builds the plan of one operation against one schema (one instance per build)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDetails],
        variable_values: VariableValues,
        operation: Any,
        hide_suggestions: bool,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variable_values = variable_values
        self.operation = operation
        self.hide_suggestions = hide_suggestions
        self.depth = 0

    def build(self) -> Plan:
        root_type = self.schema.get_root_type(self.operation.operation)
        if root_type is None:
            raise NotCompiled("no root type")  # graphql-core words the error
        grouped, defers, _forbidden = collect_fields(
            self.schema,
            self.fragments,
            self.variable_values,
            root_type,
            self.operation,
            self.hide_suggestions,
        )
        if defers:
            raise NotCompiled("@defer")
        return Plan(self._object(root_type, grouped), self.operation.operation)

    def _object(
        self, object_type: GraphQLObjectType, grouped: dict[str, list[FieldDetails]]
    ) -> ObjectPlan:
        plan = ObjectPlan(object_type)
        fields = []
        for key, details in grouped.items():
            if any(d.fragment_variable_values is not None or d.defer_usage for d in details):
                raise NotCompiled("fragment variables or @defer")
            name = details[0].node.name.value
            if name == "__typename":
                field = FieldPlan(key, details, object_type, None)
                field.kind = TYPENAME
                fields.append(field)
                continue
            if name.startswith("__"):
                raise NotCompiled("introspection")
            field_def = self.schema.get_field(object_type, name)
            if field_def is None:  # validation refuses this first; graphql-core skips it
                continue
            field = self._field(key, details, object_type, field_def)
            plan.resolvers += field.kind == RESOLVE
            plan.resolvers += _resolvers_below(field.completer)
            fields.append(field)
        plan.fields = tuple(fields)
        return plan

    def _field(
        self,
        key: str,
        details: list[FieldDetails],
        parent_type: GraphQLObjectType,
        field_def: GraphQLField,
    ) -> FieldPlan:
        field = FieldPlan(key, details, parent_type, field_def)
        field.return_type = field_def.type
        definition = (field_def.extensions or {}).get("strawberry-definition")
        resolve = field_def.resolve
        if (
            resolve is not None
            and getattr(resolve, "_is_default", False)
            and definition is not None
            and definition.is_basic_field
            and definition.default_resolver is getattr
        ):
            field.kind = ATTR
            field.attr = definition.python_name
        else:
            if resolve is None:
                raise NotCompiled(f"{parent_type.name}.{field.name} has no resolver")
            field.resolve = resolve
            base = getattr(definition, "base_resolver", None)
            batch = getattr(getattr(base, "wrapped_func", None), "__batch__", None)
            if batch is not None and not getattr(definition, "extensions", 1):
                field.batch = batch
                field.strawberry_field = definition
        node = field.nodes[0]
        if field_def.args or node.arguments:
            field.uses_variables = _has_variables(node)
        self.depth += 1
        if self.depth > 200:  # the parser refuses deeper documents; this is a guard
            raise NotCompiled("too deep")
        field.completer = self._completer(field_def.type, details)
        self.depth -= 1
        field.non_null = field.completer.non_null
        if field.completer.kind == LEAF:
            field.leaf = field.completer.fast
        return field

    def _completer(self, gql_type: GraphQLOutputType, details: list[FieldDetails]) -> Completer:
        non_null = is_non_null_type(gql_type)
        nullable: Any = gql_type.of_type if isinstance(gql_type, GraphQLNonNull) else gql_type
        if is_list_type(nullable):
            assert isinstance(nullable, GraphQLList)
            completer = Completer(LIST, non_null, nullable)
            completer.item = self._completer(nullable.of_type, details)
            return completer
        if is_leaf_type(nullable):
            completer = Completer(LEAF, non_null, nullable)
            assert isinstance(nullable, GraphQLScalarType | GraphQLEnumType)
            completer.coerce = nullable.coerce_output_value
            if isinstance(nullable, GraphQLScalarType):
                completer.fast = _FAST.get(nullable.name, OTHER)
            else:
                completer.memo = {}
            return completer
        if is_abstract_type(nullable):
            assert isinstance(nullable, GraphQLAbstractType)
            completer = Completer(ABSTRACT, non_null, nullable)
            for possible in self.schema.get_possible_types(nullable):
                completer.plans[possible.name] = self._subplan(possible, details)
            completer.resolved = Completer(RESOLVED, non_null, nullable)
            completer.resolved.plans = completer.plans
            return completer
        if is_object_type(nullable):
            assert isinstance(nullable, GraphQLObjectType)
            completer = Completer(OBJECT, non_null, nullable)
            completer.plan = self._subplan(nullable, details)
            return completer
        raise NotCompiled(f"output type {nullable}")  # pragma: no cover

    def _subplan(self, object_type: GraphQLObjectType, details: list[FieldDetails]) -> ObjectPlan:
        grouped, defers, _forbidden = collect_subfields(
            self.schema,
            self.fragments,
            self.variable_values,
            self.operation,
            object_type,
            details,
            self.hide_suggestions,
        )
        if defers:
            raise NotCompiled("@defer")
        return self._object(object_type, grouped)


def _has_variables(node: FieldNode) -> bool:
    stack: list[Any] = [a.value for a in node.arguments or ()]
    while stack:
        value = stack.pop()
        if isinstance(value, VariableNode):
            return True
        stack.extend(getattr(value, "values", None) or ())
        stack.extend(f.value for f in getattr(value, "fields", None) or ())
    return False


def _resolvers_below(completer: Completer | None) -> int:
    if completer is None:
        return 0
    if completer.kind == LIST:
        return _resolvers_below(completer.item)
    if completer.kind == OBJECT and completer.plan is not None:
        return completer.plan.resolvers
    if completer.kind == ABSTRACT:
        return sum(p.resolvers for p in completer.plans.values())
    return 0
