"""Search: the viewer's scope (API.md), validated input, then the search projection."""

from __future__ import annotations

from dataclasses import dataclass

from coachgraph.errors import InvalidInput
from coachgraph.resolvers import validate
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import Role, Viewer
from coachgraph.stores import search_docs
from coachgraph.stores.search_docs import Filters, Hit, Prepared, Scope

ALL_KINDS = ("COACH", "ATHLETE", "PROGRAM", "SKILL")


def scope_for(viewer: Viewer, kinds: list[str] | None) -> Scope:
    """Anonymous viewers and athletes never find athletes; coaches find those looking for a
    coach and their own; admins find everything."""
    wanted = list(dict.fromkeys(kinds)) if kinds else list(ALL_KINDS)
    if viewer.is_admin:
        return Scope(wanted, all_athletes=True)
    if viewer.role is Role.COACH:
        return Scope(wanted, coach_id=viewer.coach_id)
    return Scope([k for k in wanted if k != "ATHLETE"])


@dataclass
class Results:
    hits: list[Hit]
    has_next: bool
    offset: int
    query: Prepared | None


async def search(
    ctx: Context,
    *,
    text: str,
    kinds: list[str] | None,
    filters: Filters,
    first: int | None,
    after: str | None,
) -> Results:
    limits = ctx.settings.limits
    size, cursor = validate.page_args(first, after, limits, default=10)
    if len(text) > limits.max_search_length:
        raise InvalidInput(
            f"query must be at most {limits.max_search_length} characters",
            field="query",
            code="TOO_LONG",
        )
    for name, level in (("minLevel", filters.min_level), ("maxLevel", filters.max_level)):
        if level is not None:
            validate.level(level, field=f"filter.{name}")
    for name, values in (("sports", filters.sports), ("cities", filters.cities)):
        if values is not None and len(values) > limits.max_list_input:
            raise InvalidInput(f"filter.{name} lists too many values", field=f"filter.{name}")
    scope = scope_for(ctx.viewer, kinds)
    offset = cursor or 0
    async with ctx.db.pool.acquire() as conn:
        query = await search_docs.prepare(
            conn, text=text, scope=scope, filters=filters, max_words=limits.max_search_words
        )
        if query is None or not scope.kinds:
            return Results([], False, offset, None)
        found = await search_docs.hits(conn, query=query, offset=offset, limit=size + 1)
    return Results(found[:size], len(found) > size, offset, query)
