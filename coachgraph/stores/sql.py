"""Small SQL helpers shared by the repositories."""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar

import asyncpg

from coachgraph.errors import NotFound
from coachgraph.stores.records import AthleteScope, Page, SessionScope

T = TypeVar("T")
K = TypeVar("K")


class Executor(Protocol):
    """What a store calls to run SQL: an asyncpg Pool or Connection, or the GuardedPool."""

    async def execute(self, query: str, *args: object) -> str:
        """Run a statement; return its status (e.g. `UPDATE 1`)."""
        ...

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """Every row of a query."""
        ...

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        """The first row of a query, `None` if there is none."""
        ...

    async def fetchval(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 (asyncpg's own parameter)
    ) -> Any:
        """One column of the first row, `None` if there is none."""
        ...

    async def copy_records_to_table(
        self,
        table_name: str,
        *,
        records: Iterable[Sequence[object]],
        columns: Sequence[str] | None = None,
    ) -> str:
        """COPY `records` into a table; return the status."""
        ...


class Transactional(Executor, Protocol):
    """One connection: an Executor that also opens transactions (a pool cannot)."""

    def transaction(self) -> AbstractAsyncContextManager[object]:
        """A transaction (a savepoint inside one), committed on exit, rolled back on error."""
        ...


def returned(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row of a statement that always returns one (INSERT ... RETURNING, an aggregate)."""
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


@dataclass(frozen=True, slots=True)
class AthleteColumns:
    """Where a row's athlete facts are: its id, its flag, and SQL true when the coach
    `{coach}` coaches it now."""

    id: str
    looking_for_coach: str
    coached_by: str


ATHLETE_ROWS = AthleteColumns(
    "a.id",
    "a.looking_for_coach",
    "EXISTS (SELECT 1 FROM coach_athletes sc WHERE sc.coach_id = {coach} AND sc.athlete_id = a.id)",
)


def athlete_scope_sql(first_param: int, columns: AthleteColumns = ATHLETE_ROWS) -> str:
    """An AthleteScope as SQL over `columns`, reading `athlete_scope_args` from `first_param`.

    One grant per parameter, in the order of the scope's fields; the statement text is the
    same for every viewer, so it is prepared once."""
    n = first_param
    return (
        f"(${n}::bool OR (${n + 1}::bool AND {columns.looking_for_coach}) "
        f"OR {columns.id} = ${n + 2}::bigint "
        f"OR {columns.coached_by.format(coach=f'${n + 3}::bigint')})"
    )


def athlete_scope_args(scope: AthleteScope) -> list[object]:
    return [scope.everyone, scope.looking_for_coach, scope.athlete_id, scope.coach_id]


def session_scope_sql(first_param: int) -> str:
    """A SessionScope as SQL over alias `s`, reading `session_scope_args` from `first_param`."""
    n = first_param
    return (
        f"(${n}::bool OR s.athlete_id = ${n + 2}::bigint OR (s.coach_id = ${n + 1}::bigint "
        f"AND (NOT ${n + 3}::bool OR EXISTS (SELECT 1 FROM coach_athletes sc "
        "WHERE sc.coach_id = s.coach_id AND sc.athlete_id = s.athlete_id))))"
    )


def session_scope_args(scope: SessionScope) -> list[object]:
    return [scope.everyone, scope.coach_id, scope.athlete_id, scope.current_coach]


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
