"""Search in PostgreSQL (the embedded default): documents kept in step by the projector in
`search_documents`, queried with full-text search.

A query costs three statements at most, each only when asked for: the words (folded,
corrected), the page, and the count or facets. What keeps it fast at 100k documents
(../shared/MEASUREMENTS.md):
- typos are corrected per word, against the table of indexed words, before the text search:
  an unknown word becomes the indexed words closest to it (Levenshtein ≤ 2), so the search
  itself stays one GIN lookup; no `similarity()` over matching rows;
- ranking (`ts_rank`) runs over at most `candidates` matches, not over all of them: a short
  prefix can match half the table;
- facets count exactly up to `facet_limit` matches (past it: the first `facet_limit`, and
  the result says so);
- a word of one letter is not a prefix ("r" would match half the table).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from coachgraph.search.model import (
    FACET_FIELDS,
    WORD,
    FacetCounts,
    Facets,
    Hit,
    Prepared,
    SearchQuery,
    words,
)
from coachgraph.stores import search_docs, search_query
from coachgraph.stores.db import Database
from coachgraph.stores.outbox import Dirty
from coachgraph.stores.search_query import FacetValues, QueryWord


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery(found: list[QueryWord], *, min_prefix: int, max_corrections: int) -> str | None:
    """ANDed words; each also matches as a prefix ("swi" finds "swimming"); an unknown word is
    replaced by its closest corrections only ("runing" is "running", not also "rowing")."""
    terms = []
    for word, near in found:
        if not WORD.fullmatch(word):
            continue  # folding left nothing searchable
        options = [_lexeme(word) + (":*" if len(word) >= min_prefix else "")]
        if near:
            best = min(edits for _, edits in near)
            options += [_lexeme(w) for w, edits in near if edits == best][:max_corrections]
        terms.append("(" + " | ".join(options) + ")")
    return " & ".join(terms) if terms else None


@dataclass(frozen=True, slots=True)
class PgPrepared(Prepared):
    """A query ready to run against `search_documents`."""

    query: search_query.DocumentQuery


class PostgresSearch:
    """The search projection in the records' own database."""

    name = "postgres"
    persistent = True  # in the records' database, beside its offset
    offset_name = "search:postgres"

    def __init__(
        self,
        db: Database,
        *,
        candidates: int = 1_000,
        facet_limit: int = 10_000,
        min_prefix: int = 2,
        max_corrections: int = 3,
        facet_cache_size: int = 100_000,
        rebuild_batch: int = 5_000,
        timeout: float = 2.0,
    ):
        self.db = db
        self.candidates = candidates
        self.facet_limit = facet_limit
        self.min_prefix = min_prefix
        self.max_corrections = max_corrections  # closest spellings standing in for a word
        self.facet_cache_size = facet_cache_size  # distinct (sports, city, level) kept
        self.rebuild_batch = rebuild_batch
        self.timeout = timeout  # of a ping
        self._facet_cache: dict[int, FacetValues] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        await search_query.ping(self.db.pool, seconds=self.timeout)

    # ------------------------------------------------------------------ projection
    async def apply(self, dirty: Dirty) -> None:
        async with self.db.transaction() as conn:
            for kind, ids in (await search_docs.touched(conn, dirty)).items():
                await search_docs.refresh(conn, kind=kind, ids=ids)

    async def rebuild(self) -> int:
        async with self.db.transaction() as conn:
            return await search_docs.rebuild(conn, batch=self.rebuild_batch)

    # ------------------------------------------------------------------ queries
    async def prepare(self, query: SearchQuery) -> PgPrepared | None:
        """A blank text browses (tsquery None); text with no word in it finds nothing."""
        text: str | None = None
        if not query.browse:
            found = words(query.text, query.max_words)
            if not found:
                return None
            checked = await search_query.query_words(self.db.pool, words=found)
            text = tsquery(
                checked, min_prefix=self.min_prefix, max_corrections=self.max_corrections
            )
            if text is None:
                return None
        scope, filters = query.scope, query.filters
        return PgPrepared(
            search_query.document_query(
                text,
                kinds=scope.kinds,
                athletes=scope.athletes,
                sports=filters.sports,
                cities=filters.cities,
                min_level=filters.min_level,
                max_level=filters.max_level,
                skill_ids=filters.skill_ids,
            )
        )

    async def hits(self, prepared: Prepared, *, offset: int, limit: int) -> list[Hit]:
        """Ranked among the first `candidates` matches (or as many as the page needs)."""
        assert isinstance(prepared, PgPrepared)
        found = await search_query.hits(
            self.db.pool,
            query=prepared.query,
            offset=offset,
            limit=limit,
            candidates=self.candidates,
        )
        return [Hit(*doc) for doc in found]

    async def count(self, prepared: Prepared) -> int:
        """Exact. (Capping it and estimating the rest saved little: the bitmap of every
        match is built before any LIMIT applies.)"""
        assert isinstance(prepared, PgPrepared)
        return await search_query.count(self.db.pool, query=prepared.query)

    async def facets(self, prepared: Prepared) -> FacetCounts:
        """Counts by sport, city and level, most frequent first: exact up to `facet_limit`
        matches, counted over the first `facet_limit` beyond that.

        Grouped by each document's `facet_key` (a hash of its sports, city and level); the
        keys map back to values through a cache that never goes stale (a key is its values)."""
        assert isinstance(prepared, PgPrepared)
        by_key = await search_query.facet_key_counts(
            self.db.pool, query=prepared.query, limit=self.facet_limit
        )
        values = await self._facet_values(list(by_key))
        counts: dict[str, Counter[str]] = {f: Counter() for f in FACET_FIELDS}
        for key, n in by_key.items():
            sports, city, level = values[key]
            for sport in sports:
                counts["sport"][sport] += n
            if city is not None:
                counts["city"][city] += n
            if level is not None:
                counts["level"][str(level)] += n
        found: Facets = {
            f: sorted(c.items(), key=lambda item: (-item[1], item[0])) for f, c in counts.items()
        }
        return FacetCounts(found, exact=sum(by_key.values()) < self.facet_limit)

    async def _facet_values(self, keys: list[int]) -> dict[int, FacetValues]:
        known = self._facet_cache
        missing = [k for k in keys if k not in known]
        if missing:
            if len(known) + len(missing) > self.facet_cache_size:
                known.clear()
            known.update(await search_query.facet_values(self.db.pool, keys=missing))
        return {k: known.get(k, ([], None, None)) for k in keys}
