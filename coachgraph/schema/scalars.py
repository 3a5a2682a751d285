"""Input scalars: DateTime parsed by the standard library within a range the stores can hold,
and no input text (String, ID, JSON, anywhere) that PostgreSQL cannot store."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from operator import methodcaller
from typing import Any

from graphql import (
    BREAK,
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    ObjectFieldNode,
    StringValueNode,
    VariableDefinitionNode,
    Visitor,
    visit,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.types.base_scalars import wrap_parser
from strawberry.types.scalar import ScalarDefinition

# Instants a client may send: from 1900 up to (not including) 2200, in UTC. Python's datetime
# ends at years 1 and 9999, so "0001-01-01T00:00:00+05:00" cannot even be moved to UTC, and
# arithmetic near either end (windows, retention, time zones) overflows. Nothing in a coaching
# platform happens outside these years. Naive values are compared as if UTC; the fields that
# need an offset refuse them with a ValidationError.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def parse_datetime(value: str) -> datetime:
    """ISO 8601 between EARLIEST (inclusive) and LATEST (exclusive); ValueError otherwise."""
    parsed = datetime.fromisoformat(value)
    instant = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if not EARLIEST <= instant < LATEST:
        raise ValueError("It must be from 1900-01-01T00:00:00Z up to 2200-01-01T00:00:00Z.")
    return parsed


# Python 3.11's datetime.fromisoformat reads ISO 8601 (offsets, "Z", fractions) in C, several
# times faster than dateutil's isoparse, which Strawberry uses: it showed at 14 % of a
# 1,000-sample recordMetrics. Same name, description and output as Strawberry's own.
DATETIME = ScalarDefinition(
    name="DateTime",
    description="Date with time (isoformat)",
    specified_by_url=None,
    serialize=methodcaller("isoformat"),
    parse_value=wrap_parser(parse_datetime, "DateTime"),
    parse_literal=None,
    origin=datetime,
)


# ---------------------------------------------------------------------------- input text
# PostgreSQL text cannot hold NUL, and a lone surrogate (JSON's "\ud800", which Python decodes
# as is) is not Unicode text at all: no UTF-8 encoder, asyncpg's included, takes it. String
# is a built-in scalar that graphql-core will not let a schema redefine, so the check sits
# where every request's input enters execution: once over the variables as sent and the
# document's string literals, before any resolver runs. Over every value, whatever its type,
# so String, ID, JSON and custom scalars are covered alike.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """What in `text` no store can hold, or None when it is fine."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    return "a NUL character" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"


def _storable(text: str) -> bool:
    # isascii() is O(1) in CPython, and ASCII text has no surrogates to look for
    return "\x00" not in text if text.isascii() else _UNSTORABLE.search(text) is None


def _all_storable(variables: dict[str, Any]) -> bool:
    """Whether every string (dict keys too) in the raw variables, as decoded from JSON, is
    storable: the fast scan, about 0.5 ms for recordMetrics' 1,000 samples. Iterative: how
    deep variables may nest is the HTTP layer's limit, not Python's stack."""
    stack: list[Any] = [variables]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            for key in value:
                if isinstance(key, str) and not _storable(key):
                    return False
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
        elif isinstance(value, str) and not _storable(value):
            return False
    return True


def _refusal(kind: str, path: str, reason: str, node: Any = None) -> GraphQLError:
    return GraphQLError(
        f'{kind} "{path}" contains {reason}, which text may not hold.',
        nodes=node,
        extensions={"code": "BAD_USER_INPUT", "argument": path},
    )


def _variable_problem(variables: dict[str, Any]) -> tuple[str, str]:
    """(path, reason) of the first unstorable string in variables that have one."""
    stack: list[tuple[str, Any]] = [(f"${name}", value) for name, value in variables.items()]
    stack.reverse()
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if (reason := unstorable(value)) is not None:
                return path, reason
        elif isinstance(value, dict):
            for key in value:
                if isinstance(key, str) and (reason := unstorable(key)) is not None:
                    return path, f"{reason} in a key"
            stack.extend(reversed([(f"{path}.{key}", item) for key, item in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{path}[{i}]", item) for i, item in enumerate(value)]))
    raise AssertionError("no unstorable text in these variables")


class _Literals(Visitor):
    """Finds the first unstorable string literal, and the argument (or variable default) it
    is in, as a dotted path through input object fields."""

    def __init__(self) -> None:
        super().__init__()
        self.path: list[str] = []
        self.found: tuple[str, str, StringValueNode] | None = None

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        self.path.append(node.name.value)

    def leave_argument(self, *_: Any) -> None:
        self.path.pop()

    def enter_object_field(self, node: ObjectFieldNode, *_: Any) -> None:
        self.path.append(node.name.value)

    def leave_object_field(self, *_: Any) -> None:
        self.path.pop()

    def enter_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> None:
        self.path.append(f"${node.variable.name.value}")

    def leave_variable_definition(self, *_: Any) -> None:
        self.path.pop()

    def enter_string_value(self, node: StringValueNode, *_: Any) -> object:
        reason = unstorable(node.value)
        if reason is None:
            return None
        self.found = (".".join(self.path), reason, node)
        return BREAK


def text_refusal(document: DocumentNode, variables: dict[str, Any] | None) -> GraphQLError | None:
    """A BAD_USER_INPUT error naming the first argument or variable holding unstorable text."""
    if variables and not _all_storable(variables):
        return _refusal("Variable", *_variable_problem(variables))
    # Literals: the lexer refuses a raw lone surrogate but not a raw NUL, and escapes make
    # either; a document with neither a NUL nor a \u escape has no literal to walk for.
    source = document.loc.source.body if document.loc is not None else None
    if source is not None and "\x00" not in source and "\\u" not in source:
        return None
    literals = _Literals()
    visit(document, literals)
    if literals.found is None:
        return None
    path, reason, node = literals.found
    return _refusal("Argument", path, reason, node)


class TextCheckedExecution(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, refusing unstorable input text before execution, for
    queries, mutations and subscriptions alike (graphql-core builds one per operation)."""

    @classmethod
    def build(
        cls,
        schema: Any,
        document: DocumentNode,
        root_value: Any = None,
        context_value: Any = None,
        raw_variable_values: dict[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        refusal = text_refusal(document, raw_variable_values)
        if refusal is not None:
            return [refusal]
        return super().build(
            schema, document, root_value, context_value, raw_variable_values, *args, **kwargs
        )
