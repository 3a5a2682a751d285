"""The Schema object: root types plus the limits every request passes through."""

from __future__ import annotations

from datetime import datetime

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from coachgraph.config import Limits

from .extensions import present_errors
from .limits import budget_rule
from .mutation import Mutation
from .query import Query
from .scalars import DATETIME, TextCheckedExecution
from .subscription import Subscription


class Schema(strawberry.Schema):
    """Presents every error list the engine produces, subscriptions' included."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # in place: this is the list the result sends, over HTTP and WebSocket alike
        present_errors(errors)


def build_schema(limits: Limits | None = None) -> strawberry.Schema:
    """The GraphQL schema: depth, alias, token and cost budgets and cache sizes from `limits`."""
    limits = limits or Limits()
    # The rule class is made once: ValidationCache keys on the rules, and a rule class made per
    # request would never hit the cache. One rule measures depth, aliases and cost together,
    # each fragment once (Strawberry's limiters re-expand fragments: exponential, issue 11).
    rules: list[type[ASTValidationRule]] = [budget_rule(limits)]
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        scalar_overrides={datetime: DATETIME},
        execution_context_class=TextCheckedExecution,  # no NUL or lone surrogate in input text
        config=StrawberryConfig(auto_camel_case=True),
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
            lambda: ParserCache(maxsize=limits.parser_cache_size),
            lambda: AddValidationRules(rules),
            lambda: ValidationCache(maxsize=limits.validation_cache_size),
        ],
    )
