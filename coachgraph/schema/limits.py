"""Query budgets (depth, aliases, cost), checked during validation in time linear in the document.

Strawberry's QueryDepthLimiter and MaxAliasesLimiter, like the cost rule that preceded this
module, walked each fragment spread anew: fragments that each spread the previous one twice made
validation exponential in the length of the document, and an 830-byte request blocked the event
loop for seconds (issue 11). Here every selection set, fragment bodies included, is measured
once, bottom-up, and a spread reads its fragment's memoised measure. The measures are summed with
saturating arithmetic, so numbers that the doubling makes astronomical stay small.

The cost of a field with a `first` argument multiplies the cost of its selection by the page it
may return, which needs the schema: the type each selection set selects on is worked out on the
walk (the operation's root type, a field's named return type, a fragment's type condition), and
depends on the selection set alone, a fragment's body included (its type condition, wherever it
is spread), so the memo stays valid.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLCompositeType,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NamedTypeNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionNode,
    SelectionSetNode,
    TypeMetaFieldDef,
    ValidationRule,
    get_named_type,
    is_composite_type,
)

from coachgraph.config import Limits

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"

# A `first` literal longer than this is over any budget; int() of a very long digit string
# is slow, and beyond 4300 digits Python refuses it with a ValueError.
_MAX_LITERAL_DIGITS = 12

# The largest page of a `first` argument, where it is not `Limits.max_page_size`: (type, field)
# to the name of the `Limits` attribute the resolver checks `first` against. It bounds a `first`
# given as a variable (its value is unknown at validation). A field selected on an interface is
# looked up under the interface's name. Checked against the schema and `Limits` by the tests.
PAGE_CAPS: Mapping[tuple[str, str], str] = {
    ("TrainingSession", "samples"): "max_sample_page",
}


@dataclass(frozen=True, slots=True)
class Budget:
    """What one document may ask for; the numbers of `Limits` the rule needs."""

    max_depth: int
    max_aliases: int
    max_cost: int
    # the multiplier of a `first` whose value is a variable: the largest page it may ask for
    page_size: int
    # the same for the fields of PAGE_CAPS, (type, field) to their largest page
    page_caps: Mapping[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def from_limits(cls, limits: Limits) -> Budget:
        return cls(
            max_depth=limits.max_depth,
            max_aliases=limits.max_aliases,
            max_cost=limits.max_query_cost,
            page_size=limits.max_page_size,
            page_caps={key: int(getattr(limits, name)) for key, name in PAGE_CAPS.items()},
        )

    def largest_page(self, type_name: str, field_name: str) -> int:
        """The largest page a field's `first` may ask for."""
        return self.page_caps.get((type_name, field_name), self.page_size)

    @property
    def alias_cap(self) -> int:
        """Counts saturate here: any larger number is refused just the same."""
        return self.max_aliases + 1

    @property
    def cost_cap(self) -> int:
        return self.max_cost + 1


@dataclass(frozen=True, slots=True)
class Measure:
    """What a selection set asks for, its fragment spreads expanded.

    depth: nested fields with a selection set, counted as QueryDepthLimiter does (an
    introspection field, `__schema` say, counts 0 with all below it). Depth only adds along a
    spread chain, so it stays bounded by the document's length and needs no cap.
    aliases: aliased fields, as MaxAliasesLimiter counts them; saturated at `alias_cap`.
    cost: each field 1, a field with a `first` argument in the schema multiplying the cost of
    its selection by the page it may return (see `_Meter._multiplier`); saturated at `cost_cap`.
    """

    depth: int
    aliases: int
    cost: int


ZERO = Measure(depth=0, aliases=0, cost=0)


@dataclass(frozen=True, slots=True)
class DocumentMeasure:
    """Each operation's measure, and the work it took (for tests: linear, not exponential)."""

    operations: list[tuple[OperationDefinitionNode, Measure]]
    # selections looked at; each selection of each selection set counts twice at most
    visits: int
    # selection sets measured; each (a fragment's body included) exactly once
    evaluations: int


Parent = GraphQLCompositeType | None  # what a selection set selects on; None: unknown


class _Meter:
    """Measures selection sets once each, memoised by node identity.

    The walk is iterative: a chain of fragments spreading one another may be as long as the
    token limit allows, deeper than Python's recursion limit.

    Each selection set's parent type is recorded when the set is first reached: the node of a
    field or inline fragment has one place in the document, and a fragment's body has its type
    condition, so a set has one parent type however it is reached.
    """

    def __init__(
        self, fragments: dict[str, FragmentDefinitionNode], budget: Budget, schema: GraphQLSchema
    ) -> None:
        self.fragments = fragments
        self.budget = budget
        self.schema = schema
        self.memo: dict[int, Measure] = {}
        self.parents: dict[int, Parent] = {}
        self.visits = 0
        self.evaluations = 0

    def measure(self, root: SelectionSetNode, parent: Parent) -> Measure:
        self.parents.setdefault(id(root), parent)
        # `open_` holds the selection sets on the current path whose dependencies are pending.
        # A dependency that is already open is a fragment cycle (NoFragmentCyclesRule reports
        # it); it counts as ZERO here so the walk ends.
        open_: set[int] = set()
        stack = [root]
        while stack:
            node = stack[-1]
            key = id(node)
            if key in self.memo:
                stack.pop()
            elif key in open_:  # back on top: every dependency is measured or on a cycle
                self.memo[key] = self._combine(node)
                open_.discard(key)
                stack.pop()
            else:
                open_.add(key)
                stack.extend(
                    child
                    for child in self._dependencies(node)
                    if id(child) not in self.memo and id(child) not in open_
                )
        return self.memo[id(root)]

    def _dependencies(self, node: SelectionSetNode) -> Iterator[SelectionSetNode]:
        parent = self.parents.get(id(node))
        for selection in node.selections:
            self.visits += 1
            child = self._inner(selection)
            if child is not None:
                self.parents.setdefault(id(child), self._child_parent(selection, parent))
                yield child

    def _inner(self, selection: SelectionNode) -> SelectionSetNode | None:
        """The selection set a selection stands for: its own, or its fragment's body."""
        if isinstance(selection, FieldNode | InlineFragmentNode):
            return selection.selection_set
        if isinstance(selection, FragmentSpreadNode):
            # an unknown fragment is KnownFragmentNamesRule's to report
            fragment = self.fragments.get(selection.name.value)
            return None if fragment is None else fragment.selection_set
        return None

    def _child_parent(self, selection: SelectionNode, parent: Parent) -> Parent:
        """The type the selection set of `selection` (selected on `parent`) selects on."""
        if isinstance(selection, FieldNode):
            definition = self._field(parent, selection.name.value)
            return None if definition is None else self._composite(get_named_type(definition.type))
        if isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            return parent if condition is None else self._named(condition)
        if isinstance(selection, FragmentSpreadNode):
            fragment = self.fragments.get(selection.name.value)
            return None if fragment is None else self._named(fragment.type_condition)
        return None

    def _named(self, node: NamedTypeNode) -> Parent:
        return self._composite(self.schema.get_type(node.name.value))

    @staticmethod
    def _composite(named: GraphQLNamedType | None) -> Parent:
        # a type condition on a scalar, say, is FragmentsOnCompositeTypesRule's to report
        return named if is_composite_type(named) else None

    def _field(self, parent: Parent, name: str) -> GraphQLField | None:
        """A field's definition; None where unknown (FieldsOnCorrectTypeRule reports it)."""
        if parent is not None and parent is self.schema.query_type:
            if name == "__schema":
                return SchemaMetaFieldDef
            if name == "__type":
                return TypeMetaFieldDef
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            fields: Mapping[str, GraphQLField] = parent.fields
            return fields.get(name)
        return None  # a union selects no field but __typename; an unknown type none at all

    def _combine(self, node: SelectionSetNode) -> Measure:
        self.evaluations += 1
        budget = self.budget
        parent = self.parents.get(id(node))
        depth = aliases = cost = 0
        for selection in node.selections:
            self.visits += 1
            child = self._inner(selection)
            inner = ZERO if child is None else self.memo.get(id(child), ZERO)
            if isinstance(selection, FieldNode):
                aliases += 1 if selection.alias else 0
                if child is not None and not selection.name.value.startswith("__"):
                    depth = max(depth, 1 + inner.depth)
                cost += 1 + self._multiplier(selection, parent) * inner.cost
            else:  # a fragment adds no level and no field of its own
                depth = max(depth, inner.depth)
                cost += inner.cost
            aliases = min(budget.alias_cap, aliases + inner.aliases)
            cost = min(budget.cost_cap, cost)
        return Measure(depth=depth, aliases=aliases, cost=cost)

    def _multiplier(self, node: FieldNode, parent: Parent) -> int:
        """How many times a field's selection may be resolved, for a field whose definition has
        a `first` argument: the literal given (at least 1); for a variable (or null, or a value
        of the wrong type) the largest page the field may ask for; absent, the argument's
        default in the schema. Any other field, an unknown one included: 1.
        """
        definition = None if parent is None else self._field(parent, node.name.value)
        argument = None if definition is None else definition.args.get("first")
        if parent is None or argument is None:
            return 1
        for given in node.arguments or ():
            if given.name.value != "first":
                continue
            value = given.value
            if not isinstance(value, IntValueNode):
                return self.budget.largest_page(parent.name, node.name.value)
            if len(value.value) > _MAX_LITERAL_DIGITS:
                return self.budget.cost_cap
            return min(self.budget.cost_cap, max(1, int(value.value)))
        return self._default(argument, parent.name, node.name.value)

    def _default(self, argument: GraphQLArgument, type_name: str, field_name: str) -> int:
        """An absent `first`: its default (Strawberry fills in the Python default); with no
        integer default, what the resolver does is unknown, so the largest page."""
        default = argument.default_value
        if isinstance(default, int) and not isinstance(default, bool):
            return min(self.budget.cost_cap, max(1, default))
        return self.budget.largest_page(type_name, field_name)


def measure_document(
    document: DocumentNode, budget: Budget, schema: GraphQLSchema
) -> DocumentMeasure:
    """Measure every operation of `document` against `schema`, each fragment body once."""
    fragments: dict[str, FragmentDefinitionNode] = {}
    operations: list[OperationDefinitionNode] = []
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            # a duplicate name is UniqueFragmentNamesRule's to report; the first one counts
            fragments.setdefault(definition.name.value, definition)
        elif isinstance(definition, OperationDefinitionNode):
            operations.append(definition)
    meter = _Meter(fragments, budget, schema)
    measured = [
        (op, meter.measure(op.selection_set, schema.get_root_type(op.operation)))
        for op in operations
    ]
    return DocumentMeasure(measured, visits=meter.visits, evaluations=meter.evaluations)


def too_complex(message: str, operation: OperationDefinitionNode | None = None) -> GraphQLError:
    """A refusal that carries its code, so error presentation need not guess it from the text."""
    return GraphQLError(message, operation, extensions={"code": QUERY_TOO_COMPLEX})


def budget_errors(measured: DocumentMeasure, budget: Budget) -> list[GraphQLError]:
    """The refusals a measured document earns: depth and cost per operation, aliases in all."""
    errors: list[GraphQLError] = []
    aliases = 0
    for operation, measure in measured.operations:
        name = operation.name.value if operation.name else "anonymous"
        if measure.depth > budget.max_depth:
            errors.append(
                too_complex(
                    f"'{name}' exceeds maximum operation depth of {budget.max_depth}", operation
                )
            )
        if measure.cost > budget.max_cost:
            errors.append(
                too_complex(
                    f"'{name}' exceeds the query cost budget of {budget.max_cost}", operation
                )
            )
        aliases = min(budget.alias_cap, aliases + measure.aliases)
    if aliases > budget.max_aliases:
        # MaxAliasesLimiter's rule: the sum over every operation of the document
        errors.append(too_complex(f"More than {budget.max_aliases} aliases found"))
    return errors


def budget_rule(limits: Limits) -> type[ValidationRule]:
    """A validation rule refusing documents over the depth, alias or cost budget of `limits`.

    Make it once per schema: ValidationCache keys on the rule classes.
    """
    budget = Budget.from_limits(limits)

    class QueryBudget(ValidationRule):
        def enter_document(self, node: DocumentNode, *_: Any) -> None:
            measured = measure_document(node, budget, self.context.schema)
            for error in budget_errors(measured, budget):
                self.report_error(error)

    return QueryBudget
