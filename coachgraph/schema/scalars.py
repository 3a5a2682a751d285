"""Scalar overrides: DateTime parsed by the standard library, not dateutil."""

from __future__ import annotations

from datetime import datetime
from operator import methodcaller

from strawberry.schema.types.base_scalars import wrap_parser
from strawberry.types.scalar import ScalarDefinition

# Python 3.11's datetime.fromisoformat reads ISO 8601 (offsets, "Z", fractions) in C, several
# times faster than dateutil's isoparse, which Strawberry uses: it showed at 14 % of a
# 1,000-sample recordMetrics. Same name, description and output as Strawberry's own.
DATETIME = ScalarDefinition(
    name="DateTime",
    description="Date with time (isoformat)",
    specified_by_url=None,
    serialize=methodcaller("isoformat"),
    parse_value=wrap_parser(datetime.fromisoformat, "DateTime"),
    parse_literal=None,
    origin=datetime,
)
