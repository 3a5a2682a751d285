"""Error presentation (extensions.code, masking) and the query cost budget."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from strawberry.extensions import SchemaExtension

from coachgraph.errors import DomainError

log = logging.getLogger(__name__)

_TOO_COMPLEX = re.compile(
    r"exceeds maximum operation depth|aliases found|more than \d+ tokens|query cost"
)


def present_error(error: GraphQLError) -> GraphQLError:
    """Give every error an extensions.code; mask anything unexpected as INTERNAL (idempotent)."""
    if (error.extensions or {}).get("code"):
        return error
    original = error.original_error
    if isinstance(original, DomainError):
        code, message = original.code, original.message
    elif original is None or error.path is None:
        # request-level: syntax, validation, variable coercion, budgets
        code = "QUERY_TOO_COMPLEX" if _TOO_COMPLEX.search(error.message) else "BAD_USER_INPUT"
        message = error.message
    else:  # logged by Schema.process_errors before it is masked here
        code, message = "INTERNAL", "Internal server error"
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": code, **getattr(original, "extensions", {})},
    )


def is_unexpected(error: GraphQLError) -> bool:
    """An error that is a bug or an outage rather than a refusal of the request."""
    original = error.original_error
    return not (
        original is None or error.path is None or isinstance(original, DomainError | GraphQLError)
    )


class ErrorCodes(SchemaExtension):
    """Run last: rewrites the errors of every result before they leave the engine."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [present_error(e) for e in result.errors]


def cost_rule(max_cost: int, default_page: int) -> type[ValidationRule]:
    """A validation rule refusing operations whose estimated node count exceeds `max_cost`.

    Each field costs 1; a field taking `first` multiplies the cost of its selection by it
    (a literal, else the largest page a variable may ask for).
    """

    class QueryCost(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments = {
                f.name.value: f
                for f in context.document.definitions
                if isinstance(f, FragmentDefinitionNode)
            }

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            cost = self.cost(node.selection_set, depth=0)
            if cost > max_cost:
                self.report_error(
                    GraphQLError(f"Estimated query cost {cost} exceeds the budget of {max_cost}")
                )

        def cost(self, selection_set: SelectionSetNode | None, depth: int) -> int:
            if selection_set is None or depth > 50:
                return 0
            total = 0
            for sel in selection_set.selections:
                if isinstance(sel, FieldNode):
                    total += 1 + self.multiplier(sel) * self.cost(sel.selection_set, depth + 1)
                elif isinstance(sel, InlineFragmentNode):
                    total += self.cost(sel.selection_set, depth + 1)
                elif isinstance(sel, FragmentSpreadNode):
                    frag = self.fragments.get(sel.name.value)
                    total += self.cost(frag.selection_set, depth + 1) if frag else 0
            return total

        @staticmethod
        def multiplier(field: FieldNode) -> int:
            for arg in field.arguments or ():
                if arg.name.value == "first":
                    if isinstance(arg.value, IntValueNode):
                        return max(1, int(arg.value.value))
                    return default_page
            return 1

    return QueryCost
