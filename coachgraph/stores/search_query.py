"""Search queries over `search_documents`: the read side of the Postgres search backend (its
write side: search_docs.py). Why the statements look as they do: search/postgres.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from coachgraph.stores.records import AthleteScope
from coachgraph.stores.sql import AthleteColumns, Executor, athlete_scope_args, athlete_scope_sql

FacetValues = tuple[list[str], str | None, int | None]  # sports, city, level

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

DOCUMENT_ATHLETES = AthleteColumns("d.id", "d.looking_for_coach", "{coach} = ANY(d.coach_ids)")


@dataclass(frozen=True, slots=True)
class DocumentQuery:
    """A search ready to run: its tsquery ($1; None browses: every document passing the
    filter) and the WHERE clause with its arguments ($2 on)."""

    tsquery: str | None
    where: str
    args: list[Any]

    @property
    def source(self) -> str:
        """The FROM list and the text condition: a browse keeps $1 (a null) so the filter's
        parameters keep their numbers."""
        if self.tsquery is None:
            return f"search_documents d WHERE $1::text IS NULL AND {self.where}"
        return f"search_documents d, to_tsquery('simple', $1) q WHERE d.tsv @@ q AND {self.where}"


# a browse's order (API.md): by title without case, then kind and id; the index of
# migration 0020 serves it
BROWSE_ORDER = 'lower(d.title) COLLATE "C", d.kind, d.id'


class QueryWord(NamedTuple):
    """A query word folded like the documents, and when no indexed word starts with it, the
    closest indexed words (Levenshtein ≤ 2) with their distances, closest first."""

    word: str
    near: list[tuple[str, int]]


class ScoredDocument(NamedTuple):
    kind: str
    id: int
    score: float | None  # None when browsing
    highlight: str | None


async def ping(conn: Executor, *, seconds: float) -> None:
    """Raise unless the documents table answers within `seconds`."""
    await conn.fetchval("SELECT 1 FROM search_documents LIMIT 1", timeout=seconds)


async def query_words(conn: Executor, *, words: list[str]) -> list[QueryWord]:
    """Each of `words`, in order, folded and checked against the indexed words."""
    rows = await conn.fetch(_WORDS, words)
    return [QueryWord(r["word"] or "", [_near(n) for n in r["near"]]) for r in rows]


def _near(encoded: str) -> tuple[str, int]:
    word, edits = encoded.rsplit(":", 1)
    return word, int(edits)


def document_query(
    tsquery: str | None,
    *,
    kinds: list[str],
    athletes: AthleteScope,
    sports: list[str] | None,
    cities: list[str] | None,
    min_level: int | None,
    max_level: int | None,
    skill_ids: list[int] | None,
) -> DocumentQuery:
    """The documents matching `tsquery` among `kinds` (of athletes, those `athletes` holds),
    filtered: sports overlap, city equal without case or accents, level within bounds, skills
    overlap (a None filter lets everything through)."""
    athlete_rule = athlete_scope_sql(3, DOCUMENT_ATHLETES)
    where = f"""d.kind = ANY($2::text[])
        AND (d.kind <> 'ATHLETE' OR {athlete_rule})
        AND ($7::text[] IS NULL OR d.sports && $7::text[])
        AND ($8::text[] IS NULL
             OR cg_fold(d.city) = ANY(ARRAY(SELECT cg_fold(c) FROM unnest($8::text[]) c)))
        AND ($9::int IS NULL OR d.level >= $9::int)
        AND ($10::int IS NULL OR d.level <= $10::int)
        AND ($11::bigint[] IS NULL OR d.skill_ids && $11::bigint[])"""
    args = [kinds, *athlete_scope_args(athletes), sports, cities, min_level, max_level, skill_ids]
    return DocumentQuery(tsquery, where, args)


async def hits(
    conn: Executor, *, query: DocumentQuery, offset: int, limit: int, candidates: int
) -> list[ScoredDocument]:
    """Ranked among the first `candidates` matches (or as many as the page needs);
    highlights for this page only. A browse is ordered by title, with no score."""
    n = 2 + len(query.args)
    if query.tsquery is None:
        rows = await conn.fetch(
            f"""SELECT d.kind, d.id FROM {query.source}
                ORDER BY {BROWSE_ORDER} OFFSET ${n} LIMIT ${n + 1}""",
            None,
            *query.args,
            offset,
            limit,
        )
        return [ScoredDocument(r["kind"], r["id"], None, None) for r in rows]
    rows = await conn.fetch(
        f"""SELECT p.kind, p.id, p.score,
                   ts_headline('simple', p.title || ' · ' || p.body,
                               to_tsquery('simple', $1),
                               'MaxFragments=1, MaxWords=14, MinWords=5') AS highlight
            FROM (SELECT c.kind, c.id, c.title, c.body, ts_rank(c.tsv, c.q) AS score
                  FROM (SELECT d.kind, d.id, d.title, d.body, d.tsv, q
                        FROM search_documents d, to_tsquery('simple', $1) q
                        WHERE d.tsv @@ q AND {query.where}
                        LIMIT greatest(${n + 2}::int, ${n}::int + ${n + 1}::int)) c
                  ORDER BY score DESC, c.kind, c.id OFFSET ${n} LIMIT ${n + 1}) p
            ORDER BY p.score DESC, p.kind, p.id""",
        query.tsquery,
        *query.args,
        offset,
        limit,
        candidates,
    )
    return [ScoredDocument(r["kind"], r["id"], float(r["score"]), r["highlight"]) for r in rows]


async def count(conn: Executor, *, query: DocumentQuery) -> int:
    """Every match, exactly."""
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM {query.source}",
        query.tsquery,
        *query.args,
    )
    return total


async def facet_key_counts(conn: Executor, *, query: DocumentQuery, limit: int) -> dict[int, int]:
    """How many of the first `limit` matches have each `facet_key` (a hash of a document's
    sports, city and level)."""
    n = 2 + len(query.args)
    rows = await conn.fetch(
        f"""SELECT d.facet_key, count(*)::int AS n
            FROM (SELECT d.facet_key FROM {query.source} LIMIT ${n}) d
            GROUP BY d.facet_key""",
        query.tsquery,
        *query.args,
        limit,
    )
    return {r["facet_key"]: r["n"] for r in rows}


async def facet_values(conn: Executor, *, keys: list[int]) -> dict[int, FacetValues]:
    """The sports, city and level each of `keys` stands for (keys no document has: absent)."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (facet_key) facet_key, sports, city, level
           FROM search_documents WHERE facet_key = ANY($1::bigint[])""",
        keys,
    )
    return {r["facet_key"]: (list(r["sports"]), r["city"], r["level"]) for r in rows}
