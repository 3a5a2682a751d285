"""The state the graph projection is built from, read from the records in bulk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from coachgraph.stores.sql import Executor, returned


@dataclass(frozen=True, slots=True)
class CoachState:
    id: int
    sports: tuple[str, ...]
    city: str | None
    capacity: int
    active: int
    teaches: tuple[tuple[int, int], ...]  # (skill id, level)


@dataclass(frozen=True, slots=True)
class AthleteState:
    id: int
    sport: str
    city: str | None
    level: int
    looking: bool
    skills: tuple[tuple[int, int], ...]  # (skill id, level)
    goals: tuple[int, ...]
    coaches: tuple[int, ...]
    programs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SkillState:
    id: int
    sport: str
    prerequisites: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ProgramState:
    id: int
    sport: str
    level: int
    coach_id: int
    skills: tuple[int, ...]


@dataclass
class States:
    """Current state of some records; ids asked for but absent are in `missing`."""

    coaches: list[CoachState]
    athletes: list[AthleteState]
    skills: list[SkillState]
    programs: list[ProgramState]
    missing: dict[str, set[int]]


def _pairs(values: list[Any] | None) -> tuple[tuple[int, int], ...]:
    return tuple((int(v[0]), int(v[1])) for v in values or ())


def _ids(values: list[int] | None) -> tuple[int, ...]:
    return tuple(values or ())


# Each query takes ($1 bigint[] ids or NULL for all, $2 after id, $3 limit)
_COACHES = """
SELECT c.id, c.sports, c.city, c.capacity, c.active_athlete_count AS active,
       (SELECT array_agg(ARRAY[cs.skill_id, cs.level] ORDER BY cs.skill_id)
          FROM coach_skills cs WHERE cs.coach_id = c.id) AS teaches
FROM coaches c WHERE ($1::bigint[] IS NULL OR c.id = ANY($1)) AND c.id > $2
ORDER BY c.id LIMIT $3"""

_ATHLETES = """
SELECT a.id, a.sport, a.city, a.level, a.looking_for_coach AS looking,
       (SELECT array_agg(ARRAY[x.skill_id, x.level] ORDER BY x.skill_id)
          FROM athlete_skills x WHERE x.athlete_id = a.id) AS skills,
       (SELECT array_agg(g.skill_id ORDER BY g.skill_id)
          FROM athlete_goals g WHERE g.athlete_id = a.id) AS goals,
       (SELECT array_agg(ca.coach_id ORDER BY ca.coach_id)
          FROM coach_athletes ca WHERE ca.athlete_id = a.id) AS coaches,
       (SELECT array_agg(e.program_id ORDER BY e.program_id)
          FROM enrollments e WHERE e.athlete_id = a.id) AS programs
FROM athletes a WHERE ($1::bigint[] IS NULL OR a.id = ANY($1)) AND a.id > $2
ORDER BY a.id LIMIT $3"""

_SKILLS = """
SELECT s.id, s.sport,
       (SELECT array_agg(p.prerequisite_id ORDER BY p.prerequisite_id)
          FROM skill_prerequisites p WHERE p.skill_id = s.id) AS prerequisites
FROM skills s WHERE ($1::bigint[] IS NULL OR s.id = ANY($1)) AND s.id > $2
ORDER BY s.id LIMIT $3"""

_PROGRAMS = """
SELECT p.id, p.sport, p.level, p.coach_id,
       (SELECT array_agg(ps.skill_id ORDER BY ps.skill_id)
          FROM program_skills ps WHERE ps.program_id = p.id) AS skills
FROM programs p WHERE ($1::bigint[] IS NULL OR p.id = ANY($1)) AND p.id > $2
ORDER BY p.id LIMIT $3"""


def _coach(r: Any) -> CoachState:
    return CoachState(
        r["id"], tuple(r["sports"]), r["city"], r["capacity"], r["active"], _pairs(r["teaches"])
    )


def _athlete(r: Any) -> AthleteState:
    return AthleteState(
        r["id"],
        r["sport"],
        r["city"],
        r["level"],
        r["looking"],
        _pairs(r["skills"]),
        _ids(r["goals"]),
        _ids(r["coaches"]),
        _ids(r["programs"]),
    )


def _skill(r: Any) -> SkillState:
    return SkillState(r["id"], r["sport"], _ids(r["prerequisites"]))


def _program(r: Any) -> ProgramState:
    return ProgramState(r["id"], r["sport"], r["level"], r["coach_id"], _ids(r["skills"]))


AGGREGATE_READERS = {
    "coach": (_COACHES, _coach),
    "athlete": (_ATHLETES, _athlete),
    "skill": (_SKILLS, _skill),
    "program": (_PROGRAMS, _program),
}


async def load(conn: Executor, *, ids: dict[str, set[int]]) -> States:
    """The current state of the given records (one statement per kind asked for)."""
    found: dict[str, list[Any]] = {kind: [] for kind in AGGREGATE_READERS}
    missing: dict[str, set[int]] = {}
    for kind, wanted in ids.items():
        if not wanted:
            continue
        sql, make = AGGREGATE_READERS[kind]
        rows = await conn.fetch(sql, sorted(wanted), 0, len(wanted))
        found[kind] = [make(r) for r in rows]
        missing[kind] = wanted - {s.id for s in found[kind]}
    return States(found["coach"], found["athlete"], found["skill"], found["program"], missing)


async def stream_all(conn: Executor, kind: str, *, chunk: int) -> AsyncIterator[list[Any]]:
    """Every record of a kind, in id-ordered chunks (for a full reindex)."""
    sql, make = AGGREGATE_READERS[kind]
    after = 0
    while True:
        rows = await conn.fetch(sql, None, after, chunk)
        if not rows:
            return
        yield [make(r) for r in rows]
        after = rows[-1]["id"]


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the outbox: (transaction id, event id), ordered as the outbox is read."""

    txid: int
    id: int


START = Position(0, 0)


async def horizon(conn: Executor) -> Position:
    """The position after every event whose transaction is settled."""
    row = returned(
        await conn.fetchrow(
            "SELECT coalesce(max(txid::text::numeric), 0) AS txid, coalesce(max(id), 0) AS id "
            "FROM outbox WHERE txid < pg_snapshot_xmin(pg_current_snapshot())"
        )
    )
    return Position(int(row["txid"]), int(row["id"]))


@dataclass(frozen=True, slots=True)
class Event:
    position: Position
    aggregate: str
    aggregate_id: int
    event: str
    payload: dict[str, Any]


async def events_after(conn: Executor, *, position: Position, limit: int) -> list[Event]:
    """Settled events after `position`, in (txid, id) order."""
    rows = await conn.fetch(
        "SELECT txid::text AS txid, id, aggregate, aggregate_id, event, payload FROM outbox "
        "WHERE (txid, id) > ($1::text::xid8, $2) "
        "AND txid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY txid, id LIMIT $3",
        str(position.txid),
        position.id,
        limit,
    )
    return [
        Event(
            Position(int(r["txid"]), r["id"]),
            r["aggregate"],
            r["aggregate_id"],
            r["event"],
            r["payload"],
        )
        for r in rows
    ]


async def lag(conn: Executor, *, position: Position) -> tuple[int, float | None]:
    """Events not yet applied after `position`, and the age in seconds of the oldest."""
    row = returned(
        await conn.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age "
            "FROM outbox WHERE (txid, id) > ($1::text::xid8, $2)",
            str(position.txid),
            position.id,
        )
    )
    return int(row["n"]), (float(row["age"]) if row["age"] is not None else None)


async def load_offset(conn: Executor, *, name: str) -> Position | None:
    row = await conn.fetchrow(
        "SELECT last_txid::text AS txid, last_id FROM projection_offsets WHERE name = $1", name
    )
    return None if row is None else Position(int(row["txid"]), row["last_id"])


async def save_offsets(conn: Executor, *, names: list[str], position: Position) -> None:
    """Record that these projections have applied everything up to `position` (one statement)."""
    if not names:
        return
    await conn.execute(
        "INSERT INTO projection_offsets (name, last_txid, last_id) "
        "SELECT n, $2::text::xid8, $3 FROM unnest($1::text[]) AS n "
        "ON CONFLICT (name) DO UPDATE SET last_txid = EXCLUDED.last_txid, "
        "last_id = EXCLUDED.last_id, updated_at = now()",
        names,
        str(position.txid),
        position.id,
    )
