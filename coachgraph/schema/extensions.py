"""Error presentation: extensions.code on every error, and masking of the unexpected."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from coachgraph.errors import DomainError

log = logging.getLogger(__name__)

# The parser's own refusals: they come as syntax errors without a code. The depth, alias and
# cost rules (limits.py) carry their code themselves.
_TOO_COMPLEX = re.compile(r"more than \d+ tokens|nested too deeply")


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
