"""What coaches and athletes share, each written once: reading by id, creating, a profile
update, a skill at a level and the skills with their levels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import asyncpg

from coachgraph.errors import NotFound
from coachgraph.stores import outbox
from coachgraph.stores.records import (
    AthleteChanges,
    CoachChanges,
    LeveledSkill,
    SkillRecord,
    Unset,
)
from coachgraph.stores.sql import Executor, missing_reference, returned


@dataclass(frozen=True, slots=True)
class Profile:
    """Where one kind of profile lives: `table` aliased `alias`, the skill table
    `{kind}_skills`, outbox aggregate `kind`, and the GraphQL type named in a NotFound."""

    kind: str
    table: str
    alias: str
    columns: str
    type_name: str


async def get_many(conn: Executor, profile: Profile, *, ids: list[int]) -> list[asyncpg.Record]:
    """The profiles' rows by id; missing ids are absent."""
    alias = profile.alias
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {profile.columns} FROM {profile.table} {alias} "
        f"WHERE {alias}.id = ANY($1::bigint[])",
        ids,
    )
    return rows


async def create(conn: Executor, profile: Profile, values: Mapping[str, object]) -> asyncpg.Record:
    """Insert a profile with `values` (column → value, in order) and its `{kind}.created`
    event (call inside a transaction); the inserted row."""
    names = ", ".join(values)
    slots = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    row = returned(
        await conn.fetchrow(
            f"INSERT INTO {profile.table} AS {profile.alias} ({names}) "
            f"VALUES ({slots}) RETURNING {profile.columns}",
            *values.values(),
        )
    )
    await outbox.append(
        conn,
        aggregate=profile.kind,
        aggregate_id=row["id"],
        event=f"{profile.kind}.created",
        payload={},
    )
    return row


def changed(changes: CoachChanges | AthleteChanges) -> dict[str, object]:
    """The columns `changes` sets (column → value), in field order."""
    given = ((f.name, getattr(changes, f.name)) for f in fields(changes))
    return {name: value for name, value in given if not isinstance(value, Unset)}


async def update(
    conn: Executor, profile: Profile, *, row_id: int, changes: CoachChanges | AthleteChanges
) -> asyncpg.Record:
    """Apply `changes` to one profile and record a `{kind}.updated` event; the updated row."""
    columns = changed(changes)
    alias = profile.alias
    sets = "".join(f"{column} = ${i}, " for i, column in enumerate(columns, start=2))
    row = await conn.fetchrow(
        f"UPDATE {profile.table} {alias} SET {sets}updated_at = now() "
        f"WHERE {alias}.id = $1 RETURNING {profile.columns}",
        row_id,
        *columns.values(),
    )
    if row is None:
        raise NotFound(profile.type_name, row_id)
    await outbox.append(
        conn,
        aggregate=profile.kind,
        aggregate_id=row_id,
        event=f"{profile.kind}.updated",
        payload={"fields": sorted(columns)},
    )
    return row


async def set_skill(
    conn: Executor, profile: Profile, *, owner_id: int, skill_id: int, level: int
) -> None:
    """Record the profile's level in a skill (insert or change) and a `{kind}.skill_set` event."""
    table, owner = f"{profile.kind}_skills", f"{profile.kind}_id"
    try:
        await conn.execute(
            f"INSERT INTO {table} ({owner}, skill_id, level) VALUES ($1, $2, $3) "
            f"ON CONFLICT ({owner}, skill_id) DO UPDATE SET level = EXCLUDED.level",
            owner_id,
            skill_id,
            level,
        )
    except asyncpg.ForeignKeyViolationError as err:
        raise missing_reference(
            err,
            {
                f"{table}_{owner}_fkey": (profile.type_name, owner_id),
                f"{table}_skill_id_fkey": ("Skill", skill_id),
            },
        ) from None
    await outbox.append(
        conn,
        aggregate=profile.kind,
        aggregate_id=owner_id,
        event=f"{profile.kind}.skill_set",
        payload={"skill_id": skill_id, "level": level},
    )


async def skills_for(
    conn: Executor, profile: Profile, *, owner_ids: list[int]
) -> dict[int, list[LeveledSkill]]:
    """Each profile's skills with levels and the skill rows, ordered by skill id."""
    table, owner = f"{profile.kind}_skills", f"{profile.kind}_id"
    rows = await conn.fetch(
        f"SELECT x.{owner}, x.level, s.id, s.slug, s.name, s.sport "
        f"FROM {table} x JOIN skills s ON s.id = x.skill_id "
        f"WHERE x.{owner} = ANY($1::bigint[]) ORDER BY x.{owner}, s.id",
        owner_ids,
    )
    # a skill many profiles share is built once, and each (skill, level) pair too; the rows
    # come grouped by owner, so each owner's list is filled in one run
    skills: dict[int, SkillRecord] = {}
    pairs: dict[tuple[int, int], LeveledSkill] = {}
    grouped: dict[int, list[LeveledSkill]] = {}
    last, current = None, []
    for owner_id, level, skill_id, slug, name, sport in rows:
        pair = pairs.get((skill_id, level))
        if pair is None:
            skill = skills.get(skill_id)
            if skill is None:
                skill = skills[skill_id] = SkillRecord(skill_id, slug, name, sport)
            pair = pairs[(skill_id, level)] = LeveledSkill(skill, level)
        if owner_id != last:
            last, current = owner_id, grouped.setdefault(owner_id, [])
        current.append(pair)
    return grouped
