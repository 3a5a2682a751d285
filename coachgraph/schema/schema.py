"""The Schema object: root types plus the limits every request passes through."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial

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
from coachgraph.engine import Engine, compiled_executor

from .extensions import present_errors
from .limits import budget_rule
from .mutation import Mutation
from .query import Query
from .scalars import DATETIME, TextCheckedExecution
from .subscription import Subscription
from .telemetry import Observed, Sink, Traced


class Schema(strawberry.Schema):
    """Presents every error list the engine produces, subscriptions' included."""

    engine: Engine

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # in place: this is the list the result sends, over HTTP and WebSocket alike
        present_errors(errors)


def build_schema(
    limits: Limits | None = None,
    *,
    compiled: bool = True,
    observers: Sequence[Sink] = (),
    traced: bool = False,
) -> strawberry.Schema:
    """The GraphQL schema: depth, alias, token and cost budgets and cache sizes from `limits`;
    operations run compiled (coachgraph.engine) unless `compiled` is false; each operation is
    reported to every one of `observers` when it ends (metrics), and traced when `traced`."""
    limits = limits or Limits()
    engine = Engine(enabled=compiled, cache_size=limits.plan_cache_size)
    # The rule class is made once: ValidationCache keys on the rules, and a rule class made per
    # request would never hit the cache. One rule measures depth, aliases and cost together,
    # each fragment once (Strawberry's limiters re-expand fragments: exponential, issue 11).
    rules: list[type[ASTValidationRule]] = [budget_rule(limits)]
    schema = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        scalar_overrides={datetime: DATETIME},
        # no NUL or lone surrogate in input text; then the compiled plan, or graphql-core
        execution_context_class=compiled_executor(TextCheckedExecution, engine),
        config=StrawberryConfig(auto_camel_case=True),
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
            lambda: ParserCache(maxsize=limits.parser_cache_size),
            lambda: AddValidationRules(rules),
            lambda: ValidationCache(maxsize=limits.validation_cache_size),
            *(partial(Observed, sink=sink) for sink in observers),
            *([Traced] if traced else []),
        ],
    )
    schema.engine = engine  # its plan cache and counters
    return schema
