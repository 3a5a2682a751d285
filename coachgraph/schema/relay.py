"""Relay connections: edges with opaque cursors, pageInfo and a lazily counted totalCount."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import strawberry

from coachgraph.ids import encode_cursor
from coachgraph.stores.records import Page

T = TypeVar("T")
R = TypeVar("R")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total: strawberry.Private[int | Callable[[], Awaitable[int]]]

    @strawberry.field
    def total_count(self) -> int:
        """How many items the whole list holds (counted only when asked for)."""
        # A sync resolver may hand graphql-core an awaitable; it awaits it. This keeps the
        # common case (count known from the page query) on the cheaper synchronous path.
        return self.total if isinstance(self.total, int) else self.total()  # type: ignore[return-value]


def connection(
    page: Page[R],
    node: Callable[[R], T],
    position: Callable[[R], int],
    *,
    after: str | None,
    total: int | Callable[[], Awaitable[int]] | None = None,
) -> Connection[T]:
    """Wrap a page of records as a connection; `position` gives each record's cursor key."""
    edges = [Edge(cursor=encode_cursor(position(item)), node=node(item)) for item in page.items]
    count = total if total is not None else (page.total if page.total is not None else len(edges))
    return Connection(
        edges=edges,
        page_info=page_info([e.cursor for e in edges], page.has_next, after),
        total=count,
    )


def page_info(cursors: list[str], has_next: bool, after: str | None) -> PageInfo:
    """pageInfo of a forward page whose edges carry `cursors`."""
    return PageInfo(
        has_next_page=has_next,
        has_previous_page=after is not None,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )
