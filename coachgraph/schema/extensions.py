"""Error presentation: extensions.code on every error, and masking of the unexpected."""

from __future__ import annotations

import logging
import re

from graphql import GraphQLError

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
    else:  # logged by present_errors before it is masked here
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


def present_errors(errors: list[GraphQLError]) -> None:
    """In place, the errors of a result as they leave the server: the unexpected ones logged
    (refusals and bad input are the client's business), then each presented. Idempotent: a
    presented error is neither logged nor changed again."""
    for error in errors:
        if is_unexpected(error):
            log.error("unexpected error at %s", error.path, exc_info=error.original_error)
    errors[:] = [present_error(e) for e in errors]
