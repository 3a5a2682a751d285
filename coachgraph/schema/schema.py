"""The Schema object: root types plus the limits every request passes through."""

from __future__ import annotations

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from coachgraph.config import Limits

from .extensions import ErrorCodes, cost_rule
from .mutation import Mutation
from .query import Query


def build_schema(limits: Limits | None = None) -> strawberry.Schema:
    """The GraphQL schema with depth, alias, token and cost budgets from `limits`."""
    limits = limits or Limits()
    cost = cost_rule(limits.max_query_cost, limits.max_page_size)
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        config=StrawberryConfig(auto_camel_case=True),
        extensions=[
            ErrorCodes,
            lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
            lambda: ParserCache(maxsize=256),
            lambda: QueryDepthLimiter(max_depth=limits.max_depth),
            lambda: MaxAliasesLimiter(max_alias_count=limits.max_aliases),
            lambda: AddValidationRules([cost]),
            lambda: ValidationCache(maxsize=256),
        ],
    )
