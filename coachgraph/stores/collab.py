"""The behaviour the collaborative vectors are learned from, and the vectors themselves
(pgvector tables of migration 0006; the arithmetic lives in coachgraph.graph.collab)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from coachgraph.stores.graph_source import Position
from coachgraph.stores.sql import Executor

# what an enrollment says about the athlete's taste: kept (active) or completed, or dropped
ENROLLMENT_SIGNAL = {"ACTIVE": 1.0, "COMPLETED": 1.5, "DROPPED": -0.5}
_LOCK_SPACE = 0x636F6C6C  # advisory locks per athlete: (space, athlete id)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """One athlete's goals, enrollments and coaches, as the vectors need them."""

    id: int
    goals: tuple[int, ...]
    programs: tuple[tuple[int, float, float], ...]  # (program, signal, enrolled at: epoch s)
    coaches: tuple[tuple[int, float, int], ...]  # (coach, assigned at: epoch s, completed sessions)


@dataclass(frozen=True, slots=True)
class Link:
    kind: str  # "coach" | "program"
    target: int
    weight: float
    feature: float


@dataclass(frozen=True, slots=True)
class Stored:
    """An athlete's vector as last written, and what it added to which coaches and programs."""

    vec: list[float]
    norm: float
    links: tuple[Link, ...]


_BEHAVIOUR = """
SELECT a.id,
       (SELECT array_agg(g.skill_id ORDER BY g.skill_id)
          FROM athlete_goals g WHERE g.athlete_id = a.id) AS goals,
       (SELECT array_agg(ARRAY[e.program_id::float8,
                               CASE e.status WHEN 'DROPPED' THEN $4::float8
                                             WHEN 'COMPLETED' THEN $5::float8 ELSE $6::float8 END,
                               extract(epoch FROM e.enrolled_at)::float8] ORDER BY e.program_id)
          FROM enrollments e WHERE e.athlete_id = a.id) AS programs,
       (SELECT array_agg(ARRAY[ca.coach_id::float8, extract(epoch FROM ca.assigned_at)::float8,
                               (SELECT count(*) FROM training_sessions s
                                 WHERE s.athlete_id = a.id AND s.coach_id = ca.coach_id
                                   AND s.status = 'COMPLETED')::float8] ORDER BY ca.coach_id)
          FROM coach_athletes ca WHERE ca.athlete_id = a.id) AS coaches
FROM athletes a WHERE ($1::bigint[] IS NULL OR a.id = ANY($1)) AND a.id > $2
ORDER BY a.id LIMIT $3"""


def _behaviour(r: Any) -> Behaviour:
    return Behaviour(
        r["id"],
        tuple(r["goals"] or ()),
        tuple((int(p[0]), float(p[1]), float(p[2])) for p in r["programs"] or ()),
        tuple((int(c[0]), float(c[1]), int(c[2])) for c in r["coaches"] or ()),
    )


def _signals() -> tuple[float, float, float]:
    return (
        ENROLLMENT_SIGNAL["DROPPED"],
        ENROLLMENT_SIGNAL["COMPLETED"],
        ENROLLMENT_SIGNAL["ACTIVE"],
    )


async def behaviour(conn: Executor, ids: Iterable[int]) -> list[Behaviour]:
    """The behaviour of these athletes (those that exist), by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    rows = await conn.fetch(_BEHAVIOUR, wanted, 0, len(wanted), *_signals())
    return [_behaviour(r) for r in rows]


async def behaviour_after(conn: Executor, after: int, limit: int) -> list[Behaviour]:
    """The next `limit` athletes by id after `after` (a full rebuild's chunk)."""
    rows = await conn.fetch(_BEHAVIOUR, None, after, limit, *_signals())
    return [_behaviour(r) for r in rows]


async def lock_athletes(conn: Executor, ids: Sequence[int]) -> None:
    """Serialise writers of these athletes' vectors until the transaction ends (sorted ids:
    two writers never wait on each other in a circle)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, (i % 2147483647)::int) "
        "FROM unnest($2::bigint[]) AS i ORDER BY i",
        _LOCK_SPACE,
        sorted(set(ids)),
    )


async def stored(conn: Executor, ids: Sequence[int]) -> dict[int, Stored]:
    rows = await conn.fetch(
        "SELECT v.id, v.vec::real[] AS vec, v.norm, "
        "(SELECT array_agg(ARRAY[CASE l.kind WHEN 'coach' THEN 0 ELSE 1 END, l.target_id, "
        "l.weight, l.feature]) FROM collab_links l WHERE l.athlete_id = v.id) AS links "
        "FROM collab_vectors v WHERE v.kind = 'athlete' AND v.id = ANY($1::bigint[])",
        list(ids),
    )
    return {
        r["id"]: Stored(
            list(r["vec"]),
            float(r["norm"]),
            tuple(
                Link("coach" if k == 0 else "program", int(t), float(w), float(f))
                for k, t, w, f in r["links"] or ()
            ),
        )
        for r in rows
    }


async def write_athletes(
    conn: Executor,
    vectors: dict[int, tuple[list[float], float, tuple[Link, ...]] | None],
) -> None:
    """Replace these athletes' rows and links (None: the athlete has none any more)."""
    ids = sorted(vectors)
    await conn.execute(
        "DELETE FROM collab_vectors WHERE kind = 'athlete' AND id = ANY($1::bigint[])", ids
    )
    await conn.execute("DELETE FROM collab_links WHERE athlete_id = ANY($1::bigint[])", ids)
    kept = [(i, v) for i, v in sorted(vectors.items()) if v is not None]
    if not kept:
        return
    await conn.execute(
        "INSERT INTO collab_vectors (kind, id, vec, norm) "
        "SELECT 'athlete', t.id, ($2::real[])[(t.n - 1) * $3 + 1 : t.n * $3]::vector, t.norm "
        "FROM unnest($1::bigint[], $4::real[]) WITH ORDINALITY AS t(id, norm, n)",
        [i for i, _ in kept],
        [x for _, v in kept for x in v[0]],
        len(kept[0][1][0]),
        [v[1] for _, v in kept],
    )
    links = [(i, link) for i, v in kept for link in v[2]]
    if links:
        await conn.execute(
            "INSERT INTO collab_links (athlete_id, kind, target_id, weight, feature) "
            "SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::real[], $5::real[])",
            [i for i, _ in links],
            [link.kind for _, link in links],
            [link.target for _, link in links],
            [link.weight for _, link in links],
            [link.feature for _, link in links],
        )


async def add(conn: Executor, deltas: dict[tuple[str, int], list[float]]) -> None:
    """Add each delta to its coach's or program's vector (created at the delta if absent);
    in (kind, id) order, so concurrent writers lock rows in one order."""
    rows = sorted(deltas.items())
    if not rows:
        return
    await conn.execute(
        "INSERT INTO collab_vectors (kind, id, vec) "
        "SELECT t.kind, t.id, ($3::real[])[(t.n - 1) * $4 + 1 : t.n * $4]::vector "
        "FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS t(kind, id, n) ORDER BY t.n "
        "ON CONFLICT (kind, id) DO UPDATE SET vec = collab_vectors.vec + EXCLUDED.vec",
        [kind for (kind, _), _ in rows],
        [i for (_, i), _ in rows],
        [x for _, vec in rows for x in vec],
        len(rows[0][1]),
    )


async def forget_missing(conn: Executor, kind: str, ids: Iterable[int]) -> None:
    """Drop the vectors of coaches or programs that no longer exist."""
    table = {"coach": "coaches", "program": "programs"}[kind]
    await conn.execute(
        f"DELETE FROM collab_vectors v WHERE v.kind = $1 AND v.id = ANY($2::bigint[]) "
        f"AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.id = v.id)",
        kind,
        sorted(set(ids)),
    )


async def clear(conn: Executor) -> None:
    await conn.execute("TRUNCATE collab_vectors, collab_links, collab_rebuild")


# migration 0046's index, dropped while a full rebuild adds to every coach vector once a chunk
# (each update an HNSW insertion: most of a rebuild's time at 5,000 coaches) and built again
# at its end, in one pass; meanwhile the nearest coaches come from a scan, as exact
_COACH_INDEX = (
    "CREATE INDEX IF NOT EXISTS collab_coach_hnsw ON collab_vectors "
    "USING hnsw ((vec::vector(128)) vector_cosine_ops) "
    "WHERE kind = 'coach' AND vector_dims(vec) = 128"
)


async def drop_coach_index(conn: Executor) -> None:
    await conn.execute("DROP INDEX IF EXISTS collab_coach_hnsw")


async def create_coach_index(conn: Executor) -> None:
    await conn.execute(_COACH_INDEX)


async def rebuild_state(conn: Executor, name: str) -> tuple[int, int, Position] | None:
    """A rebuild in progress: (athletes done up to, dims, the position it started at)."""
    row = await conn.fetchrow(
        "SELECT after_id, dims, last_txid::text AS txid, last_id FROM collab_rebuild "
        "WHERE name = $1",
        name,
    )
    if row is None:
        return None
    return row["after_id"], row["dims"], Position(int(row["txid"]), row["last_id"])


async def save_rebuild(
    conn: Executor, name: str, *, after: int, dims: int, position: Position
) -> None:
    await conn.execute(
        "INSERT INTO collab_rebuild (name, after_id, dims, last_txid, last_id) "
        "VALUES ($1, $2, $3, $4::text::xid8, $5) "
        "ON CONFLICT (name) DO UPDATE SET after_id = EXCLUDED.after_id",
        name,
        after,
        dims,
        str(position.txid),
        position.id,
    )


async def end_rebuild(conn: Executor, name: str) -> None:
    await conn.execute("DELETE FROM collab_rebuild WHERE name = $1", name)


@dataclass(frozen=True, slots=True)
class MatchVectors:
    """What one ranking reads: the athlete's vector, those of the programs it enrolled in
    (with what it did with them) and of its coaches, and for each candidate coach its vector
    and those of the programs it leads. Vectors of another dimension than the athlete's (a
    rebuild to a new size under way) are left out."""

    athlete: list[float] | None
    programs: list[tuple[list[float], float]]
    coaches: list[list[float]]
    candidates: dict[int, list[float]]
    led: dict[int, list[list[float]]]


async def match_vectors(conn: Executor, athlete_id: int, coach_ids: Sequence[int]) -> MatchVectors:
    """The vectors one ranking of coaches (or programs: `coach_ids` empty) reads, in one
    statement."""
    rows = await conn.fetch(
        """
        SELECT 0 AS role, 0::bigint AS owner, 1::float8 AS weight, v.vec::real[] AS vec
          FROM collab_vectors v WHERE v.kind = 'athlete' AND v.id = $1
        UNION ALL
        SELECT 1, 0, CASE e.status WHEN 'DROPPED' THEN $3::float8
                                   WHEN 'COMPLETED' THEN $4::float8 ELSE $5::float8 END,
               v.vec::real[]
          FROM enrollments e JOIN collab_vectors v ON v.kind = 'program' AND v.id = e.program_id
         WHERE e.athlete_id = $1
        UNION ALL
        SELECT 2, 0, 1, v.vec::real[]
          FROM coach_athletes ca JOIN collab_vectors v ON v.kind = 'coach' AND v.id = ca.coach_id
         WHERE ca.athlete_id = $1
        UNION ALL
        SELECT 3, v.id, 1, v.vec::real[]
          FROM collab_vectors v WHERE v.kind = 'coach' AND v.id = ANY($2::bigint[])
        UNION ALL
        SELECT 4, p.coach_id, 1, v.vec::real[]
          FROM programs p JOIN collab_vectors v ON v.kind = 'program' AND v.id = p.id
         WHERE p.coach_id = ANY($2::bigint[])""",
        athlete_id,
        list(coach_ids),
        *_signals(),
    )
    athlete = next((list(r["vec"]) for r in rows if r["role"] == 0), None)
    if athlete is None:
        return MatchVectors(None, [], [], {}, {})
    dims = len(athlete)
    found = MatchVectors(athlete, [], [], {}, {})
    for r in rows:
        vec = list(r["vec"])
        if len(vec) != dims:
            continue
        role = r["role"]
        if role == 1:
            found.programs.append((vec, float(r["weight"])))
        elif role == 2:
            found.coaches.append(vec)
        elif role == 3:
            found.candidates[r["owner"]] = vec
        elif role == 4:
            found.led.setdefault(r["owner"], []).append(vec)
    return found


# the dimension of the coach vectors' HNSW index (migration 0046); others scan exactly
INDEXED_DIMS = 128


async def nearest_coaches(
    conn: Executor, athlete_id: int, *, limit: int, exact: bool = False
) -> list[int]:
    """The coaches of the athlete's sport with room left, not its own, nearest by cosine to
    its query: its vector plus the unit vectors of the programs it kept and of its coaches
    (graph/collab.py's query, less the dropped programs' negative part), in one statement.

    Through the HNSW index of migration 0046 (an iterative scan, so the hard constraints
    never leave it short) when the athlete's vector has the indexed dimension; else, or
    `exact`, an exact scan of every coach vector."""
    if not exact:
        rows = await conn.fetch(
            """
            SELECT n.id, n.distance, false AS exact FROM collab_nearest_coaches($1, $2) n
            UNION ALL
            SELECT NULL, NULL, true FROM collab_vectors
             WHERE kind = 'athlete' AND id = $1 AND vector_dims(vec) <> $3""",
            athlete_id,
            limit,
            INDEXED_DIMS,
        )
        if not any(r["exact"] for r in rows):
            return [r["id"] for r in sorted(rows, key=lambda r: (r["distance"], r["id"]))]
    rows = await conn.fetch(
        """
        WITH me AS (SELECT vec FROM collab_vectors WHERE kind = 'athlete' AND id = $1),
        mine AS (
            SELECT sum(l2_normalize(x.vec)) AS vec FROM (
                SELECT v.vec FROM enrollments e
                  JOIN collab_vectors v ON v.kind = 'program' AND v.id = e.program_id
                 WHERE e.athlete_id = $1 AND e.status <> 'DROPPED'
                UNION ALL
                SELECT v.vec FROM coach_athletes ca
                  JOIN collab_vectors v ON v.kind = 'coach' AND v.id = ca.coach_id
                 WHERE ca.athlete_id = $1
            ) x WHERE vector_dims(x.vec) = (SELECT vector_dims(vec) FROM me)
        ),
        q AS (SELECT coalesce(me.vec + mine.vec, me.vec) AS vec FROM me, mine)
        SELECT v.id FROM q, athletes a
          JOIN coaches c ON a.sport = ANY(c.sports) AND c.active_athlete_count < c.capacity
          JOIN collab_vectors v ON v.kind = 'coach' AND v.id = c.id
         WHERE a.id = $1 AND vector_dims(v.vec) = vector_dims(q.vec)
           AND NOT EXISTS (SELECT 1 FROM coach_athletes ca
                            WHERE ca.coach_id = c.id AND ca.athlete_id = $1)
         ORDER BY v.vec <=> q.vec, v.id LIMIT $2""",
        athlete_id,
        limit,
    )
    return [r["id"] for r in rows]


async def size(conn: Executor) -> tuple[int, int]:
    """Rows and bytes of the vectors and links (table, index and TOAST)."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM collab_vectors) AS n, "
        "pg_total_relation_size('collab_vectors') + pg_total_relation_size('collab_links') AS b"
    )
    assert row is not None
    return int(row["n"]), int(row["b"])


@dataclass(frozen=True, slots=True)
class NearProgram:
    id: int
    sport: str
    level: int
    coach_id: int
    skills: tuple[int, ...]


async def nearest_programs(conn: Executor, athlete_id: int, *, limit: int) -> list[NearProgram]:
    """The programs of the athlete's sport it is not enrolled in that come closest: most of
    its goals (or, without goals, of its skills) first, then the nearest level, then by id.
    For recommendPrograms when nothing fits: the records, so both graph backends agree."""
    rows = await conn.fetch(
        """
        WITH a AS (SELECT id, sport, level FROM athletes WHERE id = $1),
        targets AS (
            SELECT skill_id FROM athlete_goals WHERE athlete_id = $1
            UNION
            SELECT skill_id FROM athlete_skills
             WHERE athlete_id = $1 AND NOT EXISTS (SELECT 1 FROM athlete_goals WHERE athlete_id = $1)
        )
        SELECT p.id, p.sport, p.level, p.coach_id,
               coalesce((SELECT array_agg(ps.skill_id ORDER BY ps.skill_id)
                           FROM program_skills ps WHERE ps.program_id = p.id), '{}') AS skills,
               (SELECT count(*) FROM program_skills ps
                 WHERE ps.program_id = p.id AND ps.skill_id IN (SELECT skill_id FROM targets))
                 AS hits,
               abs(p.level - a.level) AS distance
        FROM a JOIN programs p ON p.sport = a.sport
        WHERE NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.athlete_id = $1 AND e.program_id = p.id)
        ORDER BY hits DESC, distance, p.id LIMIT $2""",
        athlete_id,
        limit,
    )
    return [
        NearProgram(r["id"], r["sport"], r["level"], r["coach_id"], tuple(r["skills"]))
        for r in rows
    ]
