"""Small SQL helpers shared by the repositories."""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from typing import Any, TypeVar

import asyncpg

from coachgraph.errors import NotFound
from coachgraph.stores.records import AthleteScope, Page, SessionScope

T = TypeVar("T")
K = TypeVar("K")

Executor = Any  # asyncpg.Pool or asyncpg.Connection: both have fetch/fetchrow/execute

ATHLETE_SCOPE_SQL = """(
    {p}::bool
    OR ({p1}::bool AND a.looking_for_coach)
    OR a.id = {p2}::bigint
    OR EXISTS (SELECT 1 FROM coach_athletes sc WHERE sc.coach_id = {p3}::bigint
               AND sc.athlete_id = a.id))"""

SESSION_SCOPE_SQL = "({p}::bool OR s.coach_id = {p1}::bigint OR s.athlete_id = {p2}::bigint)"


def athlete_scope_sql(first_param: int) -> str:
    """The visibility predicate over alias `a`, using four parameters from `first_param`."""
    n = first_param
    return ATHLETE_SCOPE_SQL.format(p=f"${n}", p1=f"${n + 1}", p2=f"${n + 2}", p3=f"${n + 3}")


def athlete_scope_args(scope: AthleteScope) -> list[Any]:
    return [scope.everyone, scope.looking_for_coach, scope.athlete_id, scope.coach_id]


def session_scope_sql(first_param: int) -> str:
    n = first_param
    return SESSION_SCOPE_SQL.format(p=f"${n}", p1=f"${n + 1}", p2=f"${n + 2}")


def session_scope_args(scope: SessionScope) -> list[Any]:
    return [scope.everyone, scope.coach_id, scope.athlete_id]


def maker(cls: type[T]) -> Callable[[asyncpg.Record], T]:
    """Build `cls` (a record dataclass) from a row by its field names; extra columns are ignored."""
    getter = operator.itemgetter(*(f.name for f in fields(cls)))  # type: ignore[arg-type]

    def make(row: asyncpg.Record) -> T:
        return cls(*getter(row))

    return make


def page(
    rows: Sequence[asyncpg.Record], first: int, make: Callable[[asyncpg.Record], T]
) -> Page[T]:
    """A page from `first + 1` fetched rows: the extra row only says there is a next page."""
    return Page([make(r) for r in rows[:first]], has_next=len(rows) > first)


def group(
    rows: Iterable[asyncpg.Record], key: str, make: Callable[[asyncpg.Record], T]
) -> dict[Any, list[T]]:
    grouped: dict[Any, list[T]] = defaultdict(list)
    for row in rows:
        grouped[row[key]].append(make(row))
    return grouped


def lateral_pages(
    rows: Iterable[asyncpg.Record], first: int, make: Callable[[asyncpg.Record], T]
) -> dict[Any, Page[T]]:
    """Pages per parent from a `unnest(parents) LEFT JOIN LATERAL (... LIMIT first + 1)` query.

    Each row carries `parent` and `_total`; a parent with no items has one row whose `id` is null.
    """
    items: dict[Any, list[T]] = defaultdict(list)
    totals: dict[Any, int] = {}
    for row in rows:
        parent = row["parent"]
        totals[parent] = row["_total"]
        if row["id"] is not None:
            items[parent].append(make(row))
    return {
        parent: Page(items[parent][:first], len(items[parent]) > first, total)
        for parent, total in totals.items()
    }


def missing_reference(
    err: asyncpg.ForeignKeyViolationError, refs: dict[str, tuple[str, int]]
) -> NotFound:
    """Translate a foreign-key violation into the NotFound of the row it names."""
    type_name, raw_id = refs.get(err.constraint_name or "", ("Record", 0))
    return NotFound(type_name, raw_id)
