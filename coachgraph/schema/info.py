"""The `info` argument every resolver of the schema receives: Strawberry's Info over our Context."""

from __future__ import annotations

import strawberry

from coachgraph.resolvers.context import Context

Info = strawberry.Info[Context, None]
