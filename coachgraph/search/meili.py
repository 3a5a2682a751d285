"""Search in Meilisearch (`MEILI_URL`), through the official async client.

Settings are applied at start (searchable, filterable, sortable and facet attributes, typo
tolerance down to four-letter words, exhaustive counts) and every write waits for its task,
so the projector only moves its position once the documents are searchable. `rebuild`
fills a fresh index and swaps it in: the live index answers throughout.

Filters are built from typed values only. Text values (sports, cities) are filtered through
keys (a hash of the folded value), so no input ever reaches the filter syntax.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import httpx
from meilisearch_python_sdk import AsyncClient
from meilisearch_python_sdk.errors import (
    MeilisearchApiError,
    MeilisearchCommunicationError,
    MeilisearchTimeoutError,
)
from meilisearch_python_sdk.models.search import SearchResults
from meilisearch_python_sdk.models.settings import (
    Faceting,
    MeilisearchSettings,
    MinWordSizeForTypos,
    Pagination,
    TypoTolerance,
)
from meilisearch_python_sdk.models.task import TaskInfo

from coachgraph.errors import Unavailable
from coachgraph.search.model import (
    FacetCounts,
    Facets,
    Filters,
    Hit,
    Prepared,
    Scope,
    SearchQuery,
    fold,
    words,
)
from coachgraph.stores import search_docs
from coachgraph.stores.db import Database
from coachgraph.stores.outbox import Dirty
from coachgraph.stores.records import AthleteScope

# Meilisearch down or not answering (the SDK speaks httpx): the search store is unavailable
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TransportError,  # connect, read, write, timeouts, protocol
    MeilisearchCommunicationError,
    MeilisearchTimeoutError,
    OSError,
)

FACETS = {"sports": "sport", "city": "city", "level": "level"}  # attribute → facet field


class MeiliTaskError(RuntimeError):
    """A Meilisearch task failed or did not finish in time."""


def key(value: str) -> str:
    """What a sport or city is filtered by: its folded form, hashed (safe in any filter)."""
    return hashlib.blake2b(fold(value.strip()).encode(), digest_size=8).hexdigest()


def uid(kind: str, raw_id: int) -> str:
    return f"{kind}-{raw_id}"


def document(row: Any) -> dict[str, Any]:
    """A Meilisearch document from a row of `search_docs.DOCUMENTS`."""
    return {
        "uid": uid(row["kind"], row["id"]),
        "kind": row["kind"],
        "id": row["id"],
        "title": row["title"],
        "body": row["body"] or "",
        "sports": list(row["sports"]),
        "sport_keys": [key(s) for s in row["sports"]],
        "city": row["city"],
        "city_key": key(row["city"]) if row["city"] else None,
        "level": row["level"],
        "skill_ids": list(row["skill_ids"]),
        "looking_for_coach": row["looking_for_coach"],
        "coach_ids": list(row["coach_ids"]),
    }


def index_settings(max_total_hits: int, *, max_facet_values: int) -> MeilisearchSettings:
    return MeilisearchSettings(
        searchable_attributes=["title", "body"],  # a title match ranks above a body match
        displayed_attributes=["kind", "id", "title", "body"],
        filterable_attributes=[
            "kind",
            "id",
            "sport_keys",
            "city_key",
            "level",
            "skill_ids",
            "looking_for_coach",
            "coach_ids",
            "sports",
            "city",
        ],
        sortable_attributes=["level", "title", "kind", "id"],
        typo_tolerance=TypoTolerance(
            enabled=True,
            # "jonh" must find "john": one typo from four letters, two from eight
            min_word_size_for_typos=MinWordSizeForTypos(one_typo=4, two_typos=8),
        ),
        pagination=Pagination(max_total_hits=max_total_hits),
        faceting=Faceting(max_values_per_facet=max_facet_values),
    )


def filter_expression(scope: Scope, filters: Filters) -> list[str | list[str]]:
    """The scope and filters as Meilisearch filter clauses (ANDed), from typed values only."""
    clauses: list[str | list[str]] = ["kind IN [" + ", ".join(scope.kinds) + "]"]
    if "ATHLETE" in scope.kinds:
        athletes = athlete_filter(scope.athletes)
        if athletes is not None:
            clauses.append(athletes)
    if filters.sports is not None:
        clauses.append(_any("sport_keys", [key(s) for s in filters.sports]))
    if filters.cities is not None:
        clauses.append(_any("city_key", [key(c) for c in filters.cities]))
    if filters.min_level is not None:
        clauses.append(f"level >= {int(filters.min_level)}")
    if filters.max_level is not None:
        clauses.append(f"level <= {int(filters.max_level)}")
    if filters.skill_ids is not None:
        clauses.append(_any("skill_ids", [str(int(s)) for s in filters.skill_ids], quote=False))
    return clauses


def athlete_filter(scope: AthleteScope) -> str | list[str] | None:
    """An AthleteScope as one clause (a list is ORed): documents that are not athletes, or
    athletes one of the scope's grants admits; None when it admits every athlete."""
    if scope.everyone:
        return None
    grants = ["kind != ATHLETE"]
    if scope.looking_for_coach:
        grants.append("looking_for_coach = true")
    if scope.athlete_id is not None:
        grants.append(f"id = {int(scope.athlete_id)}")
    if scope.coach_id is not None:
        grants.append(f"coach_ids = {int(scope.coach_id)}")
    return grants[0] if len(grants) == 1 else grants


def _any(attribute: str, values: list[str], *, quote: bool = True) -> str:
    """Any of the values (hex keys or integers: nothing to escape)."""
    if not values:
        return "kind = NONE"  # an empty list matches nothing, as in SQL
    return f"{attribute} IN [" + ", ".join(f'"{v}"' if quote else v for v in values) + "]"


# a browse's order (API.md), as the Postgres backend's: title, then kind and id
BROWSE_SORT = ["title:asc", "kind:asc", "id:asc"]


@dataclass(frozen=True, slots=True)
class MeiliPrepared(Prepared):
    text: str  # "" browses: Meilisearch's placeholder search
    filter: list[str | list[str]]


class MeiliSearch:
    """The search projection in Meilisearch; documents are read from Postgres."""

    name = "meilisearch"

    def __init__(
        self,
        db: Database,
        url: str,
        *,
        api_key: str | None = None,
        index: str = "coachgraph",
        batch: int = 5_000,
        task_timeout_ms: int = 120_000,
        request_timeout_seconds: int = 30,
        max_total_hits: int = 100_000,
        max_facet_values: int = 100,
    ) -> None:
        self.db = db
        self.url = url
        self.api_key = api_key
        self.index_name = index
        self.batch = batch
        self.task_timeout_ms = task_timeout_ms
        self.request_timeout_seconds = request_timeout_seconds  # whole: the client takes an int
        self.max_total_hits = max_total_hits
        self.max_facet_values = max_facet_values
        self._client: AsyncClient | None = None
        self.offset_name = f"search:meilisearch:{index}"
        self.persistent = True  # until start() finds no index

    @property
    def client(self) -> AsyncClient:
        assert self._client is not None, "start() first"
        return self._client

    async def start(self) -> None:
        self._client = AsyncClient(self.url, self.api_key, timeout=self.request_timeout_seconds)
        await self.client.health()
        try:
            await self.client.get_index(self.index_name)
        except MeilisearchApiError:  # a new (or lost) index: the projector rebuilds it
            self.persistent = False
        await self._ensure(self.index_name)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ping(self) -> None:
        try:
            await self.client.health()
        except _NETWORK_ERRORS as err:
            raise Unavailable("search") from err

    async def _ensure(self, name: str) -> None:
        """The index exists, with our settings applied."""
        index = await self.client.get_or_create_index(name, primary_key="uid")
        wanted = index_settings(self.max_total_hits, max_facet_values=self.max_facet_values)
        await self._wait(await index.update_settings(wanted))

    async def _wait(self, *tasks: TaskInfo) -> None:
        for task in tasks:
            result = await self.client.wait_for_task(
                task.task_uid, timeout_in_ms=self.task_timeout_ms
            )
            if result.status != "succeeded":
                raise MeiliTaskError(
                    f"Meilisearch task {task.task_uid} {result.status}: {result.error}"
                )

    # ------------------------------------------------------------------ projection
    async def apply(self, dirty: Dirty) -> None:
        index = self.client.index(self.index_name)
        fresh: list[dict[str, Any]] = []
        gone: list[str] = []
        async with self.db.pool.acquire() as conn:
            for kind, ids in (await search_docs.touched(conn, dirty)).items():
                rows = await search_docs.documents(conn, kind=kind, ids=ids)
                fresh.extend(document(r) for r in rows)
                found = {r["id"] for r in rows}
                gone.extend(uid(kind, i) for i in ids if i not in found)
        tasks = []
        if fresh:
            tasks.append(await index.add_documents(fresh))
        if gone:
            tasks.append(await index.delete_documents(gone))
        await self._wait(*tasks)

    async def rebuild(self) -> int:
        """Fill `<index>__rebuild` from the records, then swap it with the live index."""
        staging = f"{self.index_name}__rebuild"
        await self.client.delete_index_if_exists(staging)
        await self._ensure(staging)
        index = self.client.index(staging)
        total = 0
        async with self.db.pool.acquire() as conn:
            for kind in search_docs.TABLES:
                async for ids in search_docs.id_batches(conn, kind=kind, batch=self.batch):
                    rows = await search_docs.documents(conn, kind=kind, ids=ids)
                    await self._wait(await index.add_documents([document(r) for r in rows]))
                    total += len(rows)
        await self._ensure(self.index_name)
        await self._wait(await self.client.swap_indexes([(self.index_name, staging)]))
        await self.client.delete_index_if_exists(staging)  # now the old documents
        return total

    # ------------------------------------------------------------------ queries
    async def prepare(self, query: SearchQuery) -> MeiliPrepared | None:
        if query.browse:
            return MeiliPrepared("", filter_expression(query.scope, query.filters))
        found = words(query.text, query.max_words)
        if not found:
            return None
        return MeiliPrepared(" ".join(found), filter_expression(query.scope, query.filters))

    async def _search(self, prepared: Prepared, **options: Any) -> SearchResults[Any]:
        assert isinstance(prepared, MeiliPrepared)
        try:
            return await self.client.index(self.index_name).search(
                prepared.text,
                filter=prepared.filter,
                matching_strategy="all",  # every word must match, as in the Postgres backend
                **options,
            )
        except _NETWORK_ERRORS as err:
            raise Unavailable("search") from err

    async def hits(self, prepared: Prepared, *, offset: int, limit: int) -> list[Hit]:
        assert isinstance(prepared, MeiliPrepared)
        if not prepared.text:
            browsed = await self._search(prepared, offset=offset, limit=limit, sort=BROWSE_SORT)
            return [Hit(h["kind"], int(h["id"]), None, None) for h in browsed.hits]
        found = await self._search(
            prepared,
            offset=offset,
            limit=limit,
            attributes_to_highlight=["title", "body"],
            attributes_to_crop=["body"],
            crop_length=14,
            highlight_pre_tag="<b>",
            highlight_post_tag="</b>",
            show_ranking_score=True,
        )
        hits = []
        for h in found.hits:
            formatted = h.get("_formatted") or {}
            title, body = formatted.get("title") or h["title"], formatted.get("body") or ""
            highlight = f"{title} · {body}" if body else title
            hits.append(Hit(h["kind"], int(h["id"]), float(h.get("_rankingScore", 0.0)), highlight))
        return hits

    async def count(self, prepared: Prepared) -> int:
        found = await self._search(
            prepared,
            page=1,
            hits_per_page=0,  # an exhaustive count, no documents
        )
        return int(found.total_hits or 0)

    async def facets(self, prepared: Prepared) -> FacetCounts:
        found = await self._search(
            prepared,
            limit=0,
            facets=list(FACETS),
        )
        distribution = found.facet_distribution or {}
        out: Facets = {}
        for attribute, field in FACETS.items():
            counts = distribution.get(attribute) or {}
            out[field] = sorted(
                ((str(v), int(n)) for v, n in counts.items()), key=lambda p: (-p[1], p[0])
            )
        return FacetCounts(out, exact=True)  # Meilisearch counts every match
