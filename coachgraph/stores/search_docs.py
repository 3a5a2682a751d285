"""Search documents from the records: read for any backend, written to `search_documents` for
the Postgres one."""

from __future__ import annotations

from collections.abc import AsyncIterator
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


async def id_batches(conn: Executor, *, kind: str, batch: int) -> AsyncIterator[list[int]]:
    """Every record id of a kind, `batch` at a time, in order."""
    last = 0
    while True:
        ids = [
            r["id"]
            for r in await conn.fetch(
                f"SELECT id FROM {TABLES[kind]} WHERE id > $1 ORDER BY id LIMIT $2", last, batch
            )
        ]
        if not ids:
            return
        yield ids
        last = ids[-1]


async def rebuild(conn: Executor, *, batch: int) -> int:
    """Every document again from the records (inside a transaction); returns how many."""
    # DELETE, not TRUNCATE: readers keep the old documents until this commits, unblocked
    await conn.execute("DELETE FROM search_documents")
    await conn.execute("DELETE FROM search_words")
    total = 0
    for kind in TABLES:
        async for ids in id_batches(conn, kind=kind, batch=batch):
            await refresh(conn, kind=kind, ids=ids)
            total += len(ids)
    return total


async def documents(conn: Executor, *, kind: str, ids: list[int]) -> list[Any]:
    """The current documents of `ids` (records that are gone produce none)."""
    if not ids:
        return []
    return list(await conn.fetch(DOCUMENTS[kind], ids))


async def touched(conn: Executor, dirty: dict[str, set[int]]) -> dict[str, list[int]]:
    """The documents (kind → ids) whose content the changed records (aggregate → ids) decide:
    theirs, and the programs of changed coaches (a program's document names its coach)."""
    coaches = sorted(dirty.get("coach", ()))
    programs = set(dirty.get("program", ()))
    if coaches:
        rows = await conn.fetch(
            "SELECT id FROM programs WHERE coach_id = ANY($1::bigint[])", coaches
        )
        programs.update(r["id"] for r in rows)
    return {
        "SKILL": sorted(dirty.get("skill", ())),
        "COACH": coaches,
        "ATHLETE": sorted(dirty.get("athlete", ())),
        "PROGRAM": sorted(programs),
    }
