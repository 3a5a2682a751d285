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
from typing import Any

from coachgraph.search.model import (
    FACET_FIELDS,
    WORD,
    Dirty,
    FacetCounts,
    Facets,
    Filters,
    Hit,
    Prepared,
    Query,
    Scope,
    words,
)
from coachgraph.stores import search_docs
from coachgraph.stores.db import Database
from coachgraph.stores.sql import AthleteColumns, athlete_scope_args, athlete_scope_sql

FacetValues = tuple[list[str], str | None, int | None]  # sports, city, level
FACET_CACHE_SIZE = 100_000  # distinct (sports, city, level) combinations remembered

# Each query word, folded like the documents: is it the start of an indexed word, and if not,
# the indexed words closest to it. The prefix test walks the text_pattern_ops index (U+10FFFF
# sorts after every continuation of the prefix); only unknown words scan for corrections, and
# only the indexed words whose length is within two of theirs.
_WORDS = """
SELECT q.ord, q.word, k.known,
       CASE WHEN k.known THEN '{}'::text[] ELSE ARRAY(
           SELECT c.word || ':' || c.edits FROM (
               SELECT s.word, levenshtein_less_equal(s.word, q.word, 2) AS edits
               FROM search_words s
               WHERE length(s.word) BETWEEN length(q.word) - 2 AND length(q.word) + 2) c
           WHERE c.edits <= 2
           -- among equally close words: same first letter, then same length ("lnia": "lina")
           ORDER BY c.edits, left(c.word, 1) <> left(q.word, 1),
                    abs(length(c.word) - length(q.word)), c.word
           LIMIT 8) END AS near
-- OFFSET 0: fold each query word once, not once per indexed word it is compared with
FROM (SELECT cg_fold(w) AS word, ord FROM unnest($1::text[]) WITH ORDINALITY u(w, ord) OFFSET 0) q
CROSS JOIN LATERAL (SELECT EXISTS (
    SELECT 1 FROM search_words s
    WHERE s.word ~>=~ q.word AND s.word ~<~ (q.word || chr(1114111))) AS known) k
ORDER BY q.ord"""


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery(rows: list[Any], *, min_prefix: int = 2, max_corrections: int = 3) -> str | None:
    """ANDed words; each also matches as a prefix ("swi" finds "swimming"); an unknown word is
    replaced by its closest corrections only ("runing" is "running", not also "rowing")."""
    terms = []
    for row in rows:
        word = row["word"]
        if not WORD.fullmatch(word or ""):
            continue  # folding left nothing searchable
        options = [_lexeme(word) + (":*" if len(word) >= min_prefix else "")]
        near = [tuple(n.rsplit(":", 1)) for n in row["near"]]
        if near:
            best = min(int(edits) for _, edits in near)
            options += [_lexeme(w) for w, edits in near if int(edits) == best][:max_corrections]
        terms.append("(" + " | ".join(options) + ")")
    return " & ".join(terms) if terms else None


DOCUMENT_ATHLETES = AthleteColumns("d.id", "d.looking_for_coach", "{coach} = ANY(d.coach_ids)")


def _where(scope: Scope, filters: Filters, first_param: int) -> tuple[str, list[Any]]:
    n = first_param
    athletes = athlete_scope_sql(n + 1, DOCUMENT_ATHLETES)
    sql = f"""d.kind = ANY(${n}::text[])
        AND (d.kind <> 'ATHLETE' OR {athletes})
        AND (${n + 5}::text[] IS NULL OR d.sports && ${n + 5}::text[])
        AND (${n + 6}::text[] IS NULL
             OR cg_fold(d.city) = ANY(ARRAY(SELECT cg_fold(c) FROM unnest(${n + 6}::text[]) c)))
        AND (${n + 7}::int IS NULL OR d.level >= ${n + 7}::int)
        AND (${n + 8}::int IS NULL OR d.level <= ${n + 8}::int)
        AND (${n + 9}::bigint[] IS NULL OR d.skill_ids && ${n + 9}::bigint[])"""
    args = [
        scope.kinds,
        *athlete_scope_args(scope.athletes),
        filters.sports,
        filters.cities,
        filters.min_level,
        filters.max_level,
        filters.skill_ids,
    ]
    return sql, args


@dataclass(frozen=True, slots=True)
class PgPrepared(Prepared):
    """A query ready to run: its tsquery and the WHERE clause with its arguments ($2 on)."""

    tsquery: str
    where: str
    args: list[Any]


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
    ):
        self.db = db
        self.candidates = candidates
        self.facet_limit = facet_limit
        self.min_prefix = min_prefix
        self._facet_cache: dict[int, FacetValues] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        await self.db.pool.fetchval("SELECT 1 FROM search_documents LIMIT 1", timeout=2)

    # ------------------------------------------------------------------ projection
    async def apply(self, dirty: Dirty) -> None:
        async with self.db.transaction() as conn:
            for kind, ids in (await search_docs.touched(conn, dirty)).items():
                await search_docs.refresh(conn, kind=kind, ids=ids)

    async def rebuild(self) -> int:
        async with self.db.transaction() as conn:
            return await search_docs.rebuild(conn)

    # ------------------------------------------------------------------ queries
    async def prepare(self, query: Query) -> PgPrepared | None:
        found = words(query.text, query.max_words)
        if not found:
            return None
        rows = await self.db.pool.fetch(_WORDS, found)
        text = tsquery(rows, min_prefix=self.min_prefix)
        if text is None:
            return None
        where, args = _where(query.scope, query.filters, 2)
        return PgPrepared(text, where, args)

    async def hits(self, prepared: Prepared, *, offset: int, limit: int) -> list[Hit]:
        """Ranked among the first `candidates` matches (or as many as the page needs);
        highlights for this page only."""
        assert isinstance(prepared, PgPrepared)
        n = 2 + len(prepared.args)
        rows = await self.db.pool.fetch(
            f"""SELECT p.kind, p.id, p.score,
                       ts_headline('simple', p.title || ' · ' || p.body,
                                   to_tsquery('simple', $1),
                                   'MaxFragments=1, MaxWords=14, MinWords=5') AS highlight
                FROM (SELECT c.kind, c.id, c.title, c.body, ts_rank(c.tsv, c.q) AS score
                      FROM (SELECT d.kind, d.id, d.title, d.body, d.tsv, q
                            FROM search_documents d, to_tsquery('simple', $1) q
                            WHERE d.tsv @@ q AND {prepared.where}
                            LIMIT greatest(${n + 2}::int, ${n}::int + ${n + 1}::int)) c
                      ORDER BY score DESC, c.kind, c.id OFFSET ${n} LIMIT ${n + 1}) p
                ORDER BY p.score DESC, p.kind, p.id""",
            prepared.tsquery,
            *prepared.args,
            offset,
            limit,
            self.candidates,
        )
        return [Hit(r["kind"], r["id"], float(r["score"]), r["highlight"]) for r in rows]

    async def count(self, prepared: Prepared) -> int:
        """Exact. (Capping it and estimating the rest saved little: the bitmap of every
        match is built before any LIMIT applies.)"""
        assert isinstance(prepared, PgPrepared)
        total: int = await self.db.pool.fetchval(
            f"""SELECT count(*) FROM search_documents d, to_tsquery('simple', $1) q
                WHERE d.tsv @@ q AND {prepared.where}""",
            prepared.tsquery,
            *prepared.args,
        )
        return total

    async def facets(self, prepared: Prepared) -> FacetCounts:
        """Counts by sport, city and level, most frequent first: exact up to `facet_limit`
        matches, counted over the first `facet_limit` beyond that.

        Grouped by each document's `facet_key` (a hash of its sports, city and level); the
        keys map back to values through a cache that never goes stale (a key is its values)."""
        assert isinstance(prepared, PgPrepared)
        n = 2 + len(prepared.args)
        rows = await self.db.pool.fetch(
            f"""SELECT d.facet_key, count(*)::int AS n
                FROM (SELECT d.facet_key FROM search_documents d, to_tsquery('simple', $1) q
                      WHERE d.tsv @@ q AND {prepared.where} LIMIT ${n}) d
                GROUP BY d.facet_key""",
            prepared.tsquery,
            *prepared.args,
            self.facet_limit,
        )
        values = await self._facet_values([r["facet_key"] for r in rows])
        counts: dict[str, Counter[str]] = {f: Counter() for f in FACET_FIELDS}
        for r in rows:
            sports, city, level = values[r["facet_key"]]
            for sport in sports:
                counts["sport"][sport] += r["n"]
            if city is not None:
                counts["city"][city] += r["n"]
            if level is not None:
                counts["level"][str(level)] += r["n"]
        found: Facets = {
            f: sorted(c.items(), key=lambda item: (-item[1], item[0])) for f, c in counts.items()
        }
        return FacetCounts(found, exact=sum(r["n"] for r in rows) < self.facet_limit)

    async def _facet_values(self, keys: list[int]) -> dict[int, FacetValues]:
        known = self._facet_cache
        missing = [k for k in keys if k not in known]
        if missing:
            if len(known) + len(missing) > FACET_CACHE_SIZE:
                known.clear()
            rows = await self.db.pool.fetch(
                """SELECT DISTINCT ON (facet_key) facet_key, sports, city, level
                   FROM search_documents WHERE facet_key = ANY($1::bigint[])""",
                missing,
            )
            for r in rows:
                known[r["facet_key"]] = (list(r["sports"]), r["city"], r["level"])
        return {k: known.get(k, ([], None, None)) for k in keys}
