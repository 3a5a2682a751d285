"""The Schema object: root types plus the limits every request passes through."""

from __future__ import annotations

import logging
from datetime import datetime

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from coachgraph.config import Limits

from .extensions import ErrorCodes, cost_rule, is_unexpected, present_error
from .mutation import Mutation
from .query import Query
from .scalars import DATETIME
from .subscription import Subscription

log = logging.getLogger(__name__)


class Schema(strawberry.Schema):
    """Logs only unexpected errors (refusals and bad input are the client's business), and
    gives every error its extensions.code, subscriptions' included."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if is_unexpected(error):
                log.error("unexpected error at %s", error.path, exc_info=error.original_error)
        # in place: this is the list the result sends, over HTTP and WebSocket alike
        errors[:] = [present_error(e) for e in errors]


def build_schema(limits: Limits | None = None) -> strawberry.Schema:
    """The GraphQL schema with depth, alias, token and cost budgets from `limits`."""
    limits = limits or Limits()
    # The rule classes are made once: ValidationCache keys on them, and limiter extensions
    # built per request would make new classes every time, so nothing would ever be cached.
    rules = (
        QueryDepthLimiter(max_depth=limits.max_depth).validation_rules
        + MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules
        + [cost_rule(limits.max_query_cost, limits.max_page_size)]
    )
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        scalar_overrides={datetime: DATETIME},
        config=StrawberryConfig(auto_camel_case=True),
        extensions=[
            ErrorCodes,
            lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
            lambda: ParserCache(maxsize=256),
            lambda: AddValidationRules(rules),
            lambda: ValidationCache(maxsize=256),
        ],
    )
