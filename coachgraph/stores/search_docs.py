"""The Postgres search projection: documents written from the records, and the search query."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from coachgraph.stores.sql import Executor

# one statement per kind: the current document of each of `ids` (rows that no longer exist
# simply produce nothing, and are deleted by `refresh`)
DOCUMENTS = {
    "COACH": """SELECT 'COACH' AS kind, c.id, c.name AS title,
        concat_ws(' ', c.headline, c.bio, c.city, array_to_string(c.sports, ' '),
                  (SELECT string_agg(s.name, ' ') FROM coach_skills cs JOIN skills s
                   ON s.id = cs.skill_id WHERE cs.coach_id = c.id)) AS body,
        c.sports, c.city, NULL::smallint AS level,
        coalesce((SELECT array_agg(skill_id) FROM coach_skills WHERE coach_id = c.id), '{}') AS skill_ids,
        false AS looking_for_coach, '{}'::bigint[] AS coach_ids
        FROM coaches c WHERE c.id = ANY($1::bigint[])""",
    "ATHLETE": """SELECT 'ATHLETE' AS kind, a.id, a.name AS title,
        concat_ws(' ', a.city, a.sport,
                  (SELECT string_agg(s.name, ' ') FROM athlete_goals g JOIN skills s
                   ON s.id = g.skill_id WHERE g.athlete_id = a.id)) AS body,
        ARRAY[a.sport] AS sports, a.city, a.level,
        coalesce((SELECT array_agg(skill_id) FROM athlete_goals WHERE athlete_id = a.id), '{}') AS skill_ids,
        a.looking_for_coach,
        coalesce((SELECT array_agg(coach_id) FROM coach_athletes WHERE athlete_id = a.id), '{}') AS coach_ids
        FROM athletes a WHERE a.id = ANY($1::bigint[])""",
    "PROGRAM": """SELECT 'PROGRAM' AS kind, p.id, p.title,
        concat_ws(' ', p.description, p.sport, c.name,
                  (SELECT string_agg(s.name, ' ') FROM program_skills ps JOIN skills s
                   ON s.id = ps.skill_id WHERE ps.program_id = p.id)) AS body,
        ARRAY[p.sport] AS sports, c.city, p.level,
        coalesce((SELECT array_agg(skill_id) FROM program_skills WHERE program_id = p.id), '{}') AS skill_ids,
        false AS looking_for_coach, '{}'::bigint[] AS coach_ids
        FROM programs p JOIN coaches c ON c.id = p.coach_id WHERE p.id = ANY($1::bigint[])""",
    "SKILL": """SELECT 'SKILL' AS kind, s.id, s.name AS title,
        concat_ws(' ', replace(s.slug, '-', ' '), s.sport) AS body,
        ARRAY[s.sport] AS sports, NULL::text AS city, NULL::smallint AS level,
        ARRAY[s.id] AS skill_ids, false AS looking_for_coach, '{}'::bigint[] AS coach_ids
        FROM skills s WHERE s.id = ANY($1::bigint[])""",
}
COLUMNS = "kind, id, title, body, sports, city, level, skill_ids, looking_for_coach, coach_ids"
TABLES = {"COACH": "coaches", "ATHLETE": "athletes", "PROGRAM": "programs", "SKILL": "skills"}


async def refresh(conn: Executor, *, kind: str, ids: list[int]) -> None:
    """Rewrite the documents of `ids` from the records; remove those whose record is gone."""
    if not ids:
        return
    await conn.execute(
        f"""WITH fresh AS ({DOCUMENTS[kind]}),
            gone AS (DELETE FROM search_documents WHERE kind = '{kind}'
                     AND id = ANY($1::bigint[]) AND id NOT IN (SELECT id FROM fresh)),
            written AS (INSERT INTO search_documents ({COLUMNS}) SELECT * FROM fresh
                ON CONFLICT (kind, id) DO UPDATE SET title = excluded.title,
                    body = excluded.body, sports = excluded.sports, city = excluded.city,
                    level = excluded.level, skill_ids = excluded.skill_ids,
                    looking_for_coach = excluded.looking_for_coach,
                    coach_ids = excluded.coach_ids
                RETURNING tsv)
            INSERT INTO search_words (word)
            SELECT DISTINCT w.word FROM written, unnest(tsvector_to_array(written.tsv)) AS w(word)
            ON CONFLICT DO NOTHING""",
        ids,
    )


async def rebuild(conn: Executor, *, batch: int = 5_000) -> int:
    """Every document again from the records (inside a transaction); returns how many."""
    # DELETE, not TRUNCATE: readers keep the old documents until this commits, unblocked
    await conn.execute("DELETE FROM search_documents")
    await conn.execute("DELETE FROM search_words")
    total = 0
    for kind, table in TABLES.items():
        last = 0
        while True:
            ids = [
                r["id"]
                for r in await conn.fetch(
                    f"SELECT id FROM {table} WHERE id > $1 ORDER BY id LIMIT $2", last, batch
                )
            ]
            if not ids:
                break
            await refresh(conn, kind=kind, ids=ids)
            total += len(ids)
            last = ids[-1]
    return total


WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which documents a viewer may find: kinds, and for athletes, which ones."""

    kinds: list[str]
    all_athletes: bool = False
    coach_id: int | None = None  # a coach finds athletes looking for one, and its own


@dataclass(frozen=True, slots=True)
class Filters:
    sports: list[str] | None = None
    cities: list[str] | None = None
    min_level: int | None = None
    max_level: int | None = None
    skill_ids: list[int] | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    kind: str
    id: int
    score: float
    highlight: str | None


async def corrected_query(conn: Executor, words: list[str]) -> str | None:
    """A tsquery of the words, ANDed, each also as a prefix ("swi" finds "swimming"). A word
    that no indexed word starts with is taken as a typo: the indexed words within two edits of
    it stand in for it ("jonh" finds "john"). None when nothing is searchable.

    No trigram prefilter for the corrections: pg_trgm's default threshold (0.3) misses swapped
    letters ("jonh" / "john" score 0.22). Levenshtein runs over words of similar length."""
    terms = []
    for word in words:
        row = await conn.fetchrow(
            """SELECT EXISTS (SELECT 1 FROM search_words WHERE word LIKE $2) AS known,
                      ARRAY(SELECT word FROM (
                              SELECT word, levenshtein_less_equal(word, $1, 2) AS edits
                              FROM search_words
                              WHERE NOT EXISTS (SELECT 1 FROM search_words WHERE word LIKE $2)
                                AND length(word) BETWEEN length($1) - 2 AND length($1) + 2) c
                            WHERE edits <= 2
                              -- only the closest: "runing" is "running", not also "rowing"
                              AND edits = (SELECT min(levenshtein_less_equal(w.word, $1, 2))
                                           FROM search_words w WHERE length(w.word)
                                           BETWEEN length($1) - 2 AND length($1) + 2)
                            ORDER BY word LIMIT 3) AS near""",
            word,
            word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",
        )
        options = [f"'{word}':*"] + [f"'{w}'" for w in row["near"] if w != word]
        terms.append("(" + " | ".join(options) + ")")
    return " & ".join(terms) if terms else None


def _where(scope: Scope, filters: Filters, first_param: int) -> tuple[str, list[Any]]:
    n = first_param
    sql = f"""d.kind = ANY(${n}::text[])
        AND (d.kind <> 'ATHLETE' OR ${n + 1}::bool OR d.looking_for_coach
             AND ${n + 2}::bigint IS NOT NULL OR ${n + 2}::bigint = ANY(d.coach_ids))
        AND (${n + 3}::text[] IS NULL OR d.sports && ${n + 3}::text[])
        AND (${n + 4}::text[] IS NULL OR cg_fold(d.city) IN (SELECT cg_fold(c) FROM unnest(${n + 4}::text[]) c))
        AND (${n + 5}::int IS NULL OR d.level >= ${n + 5}::int)
        AND (${n + 6}::int IS NULL OR d.level <= ${n + 6}::int)
        AND (${n + 7}::bigint[] IS NULL OR d.skill_ids && ${n + 7}::bigint[])"""
    args = [
        scope.kinds,
        scope.all_athletes,
        scope.coach_id,
        filters.sports,
        filters.cities,
        filters.min_level,
        filters.max_level,
        filters.skill_ids,
    ]
    return sql, args


@dataclass(frozen=True, slots=True)
class Prepared:
    """A query ready to run: its tsquery and the WHERE clause's arguments ($2 on)."""

    tsquery: str
    where: str
    args: list[Any]


async def prepare(
    conn: Executor, *, text: str, scope: Scope, filters: Filters, max_words: int
) -> Prepared | None:
    """Fold the text like the documents, keep its words, correct them; None: no words."""
    folded: str = await conn.fetchval("SELECT cg_fold($1)", text)
    words = list(dict.fromkeys(WORD.findall(folded)))[:max_words]
    tsquery = await corrected_query(conn, words)
    if tsquery is None:
        return None
    where, args = _where(scope, filters, 2)
    return Prepared(tsquery, where, args)


async def hits(conn: Executor, *, query: Prepared, offset: int, limit: int) -> list[Hit]:
    """Best first (rank, then kind and id for a stable order); highlights for this page only."""
    n = 2 + len(query.args)
    rows = await conn.fetch(
        f"""SELECT p.kind, p.id, p.score,
                   ts_headline('simple', p.title || ' · ' || p.body, to_tsquery('simple', $1),
                               'MaxFragments=1, MaxWords=14, MinWords=5') AS highlight
            FROM (SELECT d.kind, d.id, d.title, d.body, ts_rank(d.tsv, q) AS score
                  FROM search_documents d, to_tsquery('simple', $1) q
                  WHERE d.tsv @@ q AND {query.where}
                  ORDER BY score DESC, d.kind, d.id OFFSET ${n} LIMIT ${n + 1}) p
            ORDER BY p.score DESC, p.kind, p.id""",
        query.tsquery,
        *query.args,
        offset,
        limit,
    )
    return [Hit(r["kind"], r["id"], float(r["score"]), r["highlight"]) for r in rows]


async def count(conn: Executor, *, query: Prepared) -> int:
    total: int = await conn.fetchval(
        f"""SELECT count(*) FROM search_documents d, to_tsquery('simple', $1) q
            WHERE d.tsv @@ q AND {query.where}""",
        query.tsquery,
        *query.args,
    )
    return total


async def facets(conn: Executor, *, query: Prepared) -> dict[str, list[tuple[str, int]]]:
    """Counts of every match by sport, city and level, most frequent first."""
    rows = await conn.fetch(
        f"""WITH m AS MATERIALIZED (
                SELECT d.sports, d.city, d.level FROM search_documents d,
                       to_tsquery('simple', $1) q WHERE d.tsv @@ q AND {query.where})
            SELECT 'sport' AS field, s AS value, count(*)::int AS n FROM m, unnest(m.sports) s
                GROUP BY s
            UNION ALL SELECT 'city', city, count(*)::int FROM m WHERE city IS NOT NULL
                GROUP BY city
            UNION ALL SELECT 'level', level::text, count(*)::int FROM m WHERE level IS NOT NULL
                GROUP BY level
            ORDER BY field, n DESC, value""",
        query.tsquery,
        *query.args,
    )
    found: dict[str, list[tuple[str, int]]] = {"sport": [], "city": [], "level": []}
    for r in rows:
        found[r["field"]].append((r["value"], r["n"]))
    return found
