"""The policy of API.md ("Who may do what", 2026-11-30): a former coach writes nothing more,
self-assignment only to athletes looking for a coach, and one visibility rule whose SQL,
Meilisearch and Python renderings agree."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from coachgraph.config import Limits
from coachgraph.ids import to_global_id as gid
from coachgraph.resolvers import policy
from coachgraph.resolvers.policy import (
    AthleteAccess,
    AthleteFacts,
    Role,
    SessionFacts,
    Viewer,
)
from coachgraph.search.meili import athlete_filter, document
from coachgraph.stores import search_docs, sessions
from coachgraph.stores.db import Database
from coachgraph.stores.records import AthleteScope, SessionScope
from coachgraph.stores.search_query import DOCUMENT_ATHLETES
from coachgraph.stores.sql import (
    athlete_scope_args,
    athlete_scope_sql,
    session_scope_args,
    session_scope_sql,
)
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

ERRORS = "__typename ... on UserError { message }"
RECORD = f"""mutation($id: ID!, $samples: [MetricSampleInput!]!) {{
    recordMetrics(sessionId: $id, samples: $samples) {{ {ERRORS} }} }}"""
MOVE = f"mutation($id: ID!) {{ %s(id: $id) {{ {ERRORS} }} }}"
SCHEDULE = f"""mutation($c: ID!, $a: ID!) {{ scheduleSession(input: {{coachId: $c, athleteId: $a,
    scheduledAt: "2026-12-01T10:00:00Z"}}) {{ {ERRORS} }} }}"""
ASSIGN = f"""mutation($c: ID!, $a: ID!) {{ assignCoach(coachId: $c, athleteId: $a) {{
    {ERRORS} ... on Athlete {{ coaches {{ id }} }} }} }}"""
UNASSIGN = f"""mutation($c: ID!, $a: ID!) {{ unassignCoach(coachId: $c, athleteId: $a) {{
    {ERRORS} }} }}"""
SESSION = "query($id: ID!) { node(id: $id) { ... on TrainingSession { status } } }"


def one_sample() -> list[dict[str, Any]]:
    at = (datetime.now(UTC) - timedelta(milliseconds=100)).isoformat()
    return [{"kind": "HEART_RATE", "at": at, "value": 120}]


async def start(db: Database, session_id: int) -> None:
    async with db.transaction() as conn:
        await sessions.transition(conn, session_id=session_id, to="LIVE")


# ------------------------------------------------------------------ a former coach


@dataclass
class Former:
    coach: int
    athlete: int
    scheduled: int
    live: int


async def former_coach(gql: GraphQLClient, factory: Factory) -> Former:
    """A coach that scheduled sessions with its athlete, then was unassigned by mutation."""
    coach, athlete = await factory.coach(), await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    scheduled = await factory.session(coach.id, athlete.id)
    live = await factory.session(coach.id, athlete.id)
    await start(factory.db, live.id)
    body = await gql(
        UNASSIGN,
        {"c": gid("Coach", coach.id), "a": gid("Athlete", athlete.id)},
        token_for("coach", coach.id),
    )
    assert body["data"]["unassignCoach"]["__typename"] == "Athlete", body
    return Former(coach.id, athlete.id, scheduled.id, live.id)


async def test_former_coach_cannot_start_or_end_sessions(
    gql: GraphQLClient, factory: Factory
) -> None:
    f = await former_coach(gql, factory)
    token = token_for("coach", f.coach)
    before = await factory.snapshot()
    for name, session_id in (("startSession", f.scheduled), ("endSession", f.live)):
        body = await gql(MOVE % name, {"id": gid("TrainingSession", session_id)}, token)
        assert body["data"][name]["__typename"] == "PermissionDeniedError", body
    assert await factory.snapshot() == before
    status = await factory.db.pool.fetch("SELECT status::text FROM training_sessions ORDER BY id")
    assert [r["status"] for r in status] == ["SCHEDULED", "LIVE"]


async def test_former_coach_cannot_schedule_again(gql: GraphQLClient, factory: Factory) -> None:
    f = await former_coach(gql, factory)
    before = await factory.snapshot()
    body = await gql(
        SCHEDULE,
        {"c": gid("Coach", f.coach), "a": gid("Athlete", f.athlete)},
        token_for("coach", f.coach),
    )
    assert body["data"]["scheduleSession"]["__typename"] == "PermissionDeniedError", body
    assert await factory.snapshot() == before


async def test_former_coach_cannot_record_metrics(gql: GraphQLClient, factory: Factory) -> None:
    f = await former_coach(gql, factory)
    sid = gid("TrainingSession", f.live)
    body = await gql(RECORD, {"id": sid, "samples": one_sample()}, token_for("coach", f.coach))
    assert body["data"]["recordMetrics"]["__typename"] == "PermissionDeniedError", body
    assert await factory.count("metric_samples") == 0
    # its athlete still records samples of its own live session
    mine = await gql(RECORD, {"id": sid, "samples": one_sample()}, token_for("athlete", f.athlete))
    assert mine["data"]["recordMetrics"]["__typename"] == "RecordMetrics", mine
    assert await factory.count("metric_samples") == 1


async def test_former_coach_cannot_ingest_ndjson(
    gql: GraphQLClient, client: httpx.AsyncClient, factory: Factory
) -> None:
    f = await former_coach(gql, factory)
    response = await client.post(
        f"/ingest/sessions/{gid('TrainingSession', f.live)}/samples",
        content=b"\n".join(json.dumps(s).encode() for s in one_sample()) + b"\n",
        headers={
            "Content-Type": "application/x-ndjson",
            "Authorization": f"Bearer {token_for('coach', f.coach)}",
        },
    )
    assert response.status_code == 403, response.text
    assert await factory.count("metric_samples") == 0


async def test_former_coach_cannot_add_session_media(gql: GraphQLClient, factory: Factory) -> None:
    f = await former_coach(gql, factory)
    create = f"""mutation($owner: ID!) {{ createUpload(input: {{ownerId: $owner, kind: IMAGE,
        contentType: "image/png", sizeBytes: 100}}) {{ {ERRORS} }} }}"""
    owner = {"owner": gid("TrainingSession", f.live)}
    body = await gql(create, owner, token_for("coach", f.coach))
    assert body["data"]["createUpload"]["__typename"] == "PermissionDeniedError", body
    assert await factory.count("media") == 0
    body = await gql(create, owner, token_for("athlete", f.athlete))
    assert body["data"]["createUpload"]["__typename"] == "UploadTicket", body


async def test_former_coach_still_reads_its_sessions(gql: GraphQLClient, factory: Factory) -> None:
    f = await former_coach(gql, factory)
    token = token_for("coach", f.coach)
    for session_id, status in ((f.scheduled, "SCHEDULED"), (f.live, "LIVE")):
        body = await gql(SESSION, {"id": gid("TrainingSession", session_id)}, token)
        assert body["data"]["node"] == {"status": status}, body
    body = await gql(
        "query($c: ID!) { node(id: $c) { ... on Coach { sessions { totalCount } } } }",
        {"c": gid("Coach", f.coach)},
        token,
    )
    assert body["data"]["node"]["sessions"]["totalCount"] == 2
    # but no longer the athlete itself (it is not looking for a coach)
    body = await gql(
        "query($a: ID!) { node(id: $a) { ... on Athlete { name } } }",
        {"a": gid("Athlete", f.athlete)},
        token,
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_current_coach_still_manages_its_sessions(
    gql: GraphQLClient, factory: Factory
) -> None:
    coach, athlete = await factory.coach(), await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    session = await factory.session(coach.id, athlete.id)
    token = token_for("coach", coach.id)
    sid = gid("TrainingSession", session.id)
    body = await gql(MOVE % "startSession", {"id": sid}, token)
    assert body["data"]["startSession"]["__typename"] == "TrainingSession", body
    body = await gql(RECORD, {"id": sid, "samples": one_sample()}, token)
    assert body["data"]["recordMetrics"]["__typename"] == "RecordMetrics", body


# ------------------------------------------------------------------ scheduling, assigning


async def test_schedule_session_for_an_athlete_not_coached(
    gql: GraphQLClient, factory: Factory
) -> None:
    coach, athlete = await factory.coach(), await factory.athlete(looking_for_coach=True)
    variables = {"c": gid("Coach", coach.id), "a": gid("Athlete", athlete.id)}
    before = await factory.snapshot()
    body = await gql(SCHEDULE, variables, token_for("coach", coach.id))
    assert body["data"]["scheduleSession"]["__typename"] == "PermissionDeniedError", body
    # an admin may schedule for anyone; the pair itself is what refuses it
    body = await gql(SCHEDULE, variables, token_for("admin"))
    assert body["data"]["scheduleSession"]["__typename"] == "ConflictError", body
    assert await factory.snapshot() == before


async def test_coach_assigns_itself_only_to_athletes_looking_for_one(
    gql: GraphQLClient, factory: Factory
) -> None:
    coach = await factory.coach()
    settled = await factory.athlete()
    looking = await factory.athlete(looking_for_coach=True)
    token = token_for("coach", coach.id)
    before = await factory.snapshot()
    body = await gql(ASSIGN, {"c": gid("Coach", coach.id), "a": gid("Athlete", settled.id)}, token)
    assert body["data"]["assignCoach"]["__typename"] == "PermissionDeniedError", body
    assert await factory.snapshot() == before
    assert (
        await factory.db.pool.fetchval(
            "SELECT active_athlete_count FROM coaches WHERE id = $1", coach.id
        )
        == 0
    )
    body = await gql(ASSIGN, {"c": gid("Coach", coach.id), "a": gid("Athlete", looking.id)}, token)
    assert body["data"]["assignCoach"]["coaches"] == [{"id": gid("Coach", coach.id)}], body
    admin = await gql(
        ASSIGN, {"c": gid("Coach", coach.id), "a": gid("Athlete", settled.id)}, token_for("admin")
    )
    assert admin["data"]["assignCoach"]["__typename"] == "Athlete", admin


# ------------------------------------------------------------------ one rule, every rendering


@dataclass
class Matrix:
    viewers: dict[str, Viewer]
    athletes: dict[str, int]
    sessions: dict[str, int]


async def matrix_world(factory: Factory) -> Matrix:
    """Coach `current` coaches a1; `former` coached a1 and left; `other` coaches a4."""
    current, former, other = [await factory.coach() for _ in range(3)]
    a1 = await factory.athlete()  # coached by current (formerly by former), not looking
    a2 = await factory.athlete(looking_for_coach=True)  # nobody's, looking
    a3 = await factory.athlete()  # nobody's, not looking
    a4 = await factory.athlete(looking_for_coach=True)  # coached by other, still looking
    await factory.assign(current.id, a1.id)
    await factory.assign(former.id, a1.id)
    await factory.assign(other.id, a4.id)
    s_current = await factory.session(current.id, a1.id)
    s_former = await factory.session(former.id, a1.id)
    s_other = await factory.session(other.id, a4.id)
    await factory.db.pool.execute(
        "DELETE FROM coach_athletes WHERE coach_id = $1 AND athlete_id = $2", former.id, a1.id
    )
    viewers = {
        "admin": Viewer(Role.ADMIN),
        "coach current": Viewer(Role.COACH, coach_id=current.id),
        "coach former": Viewer(Role.COACH, coach_id=former.id),
        "other coach": Viewer(Role.COACH, coach_id=other.id),
        "the athlete": Viewer(Role.ATHLETE, athlete_id=a1.id),
        "other athlete": Viewer(Role.ATHLETE, athlete_id=a2.id),
        "anonymous": policy.ANONYMOUS,
    }
    return Matrix(
        viewers,
        {"a1": a1.id, "a2": a2.id, "a3": a3.id, "a4": a4.id},
        {"current": s_current.id, "former": s_former.id, "other": s_other.id},
    )


async def python_athletes(db: Database, scope: AthleteScope) -> dict[int, AthleteAccess]:
    rows = await db.pool.fetch(
        """SELECT a.id, a.looking_for_coach, coalesce(array_agg(ca.coach_id)
               FILTER (WHERE ca.coach_id IS NOT NULL), '{}') AS coach_ids
           FROM athletes a LEFT JOIN coach_athletes ca ON ca.athlete_id = a.id GROUP BY a.id"""
    )
    return {
        r["id"]: policy.athlete_grant(
            scope, AthleteFacts(r["id"], r["looking_for_coach"], frozenset(r["coach_ids"]))
        )
        for r in rows
    }


async def sql_athletes(db: Database, scope: AthleteScope) -> set[int]:
    rows = await db.pool.fetch(
        f"SELECT a.id FROM athletes a WHERE {athlete_scope_sql(1)}", *athlete_scope_args(scope)
    )
    return {r["id"] for r in rows}


async def document_athletes(db: Database, scope: AthleteScope) -> set[int]:
    """The rendering the Postgres search backend uses, over the projected documents."""
    rows = await db.pool.fetch(
        f"SELECT d.id FROM search_documents d WHERE d.kind = 'ATHLETE' "
        f"AND {athlete_scope_sql(1, DOCUMENT_ATHLETES)}",
        *athlete_scope_args(scope),
    )
    return {r["id"] for r in rows}


CLAUSE = re.compile(r"^(\w+) (=|!=) (\w+)$")


def meili_admits(clause: str | list[str] | None, doc: dict[str, Any]) -> bool:
    """Meilisearch's meaning of the clauses athlete_filter writes (a list is ORed): `attr =
    value` holds when the value, or any element of an array, equals it."""
    if clause is None:
        return True
    if isinstance(clause, list):
        return any(meili_admits(c, doc) for c in clause)
    found = CLAUSE.match(clause)
    assert found, clause
    attribute, op, value = found.groups()
    held = doc[attribute]
    values = held if isinstance(held, list) else [held]
    equal = any(str(v).lower() == value.lower() for v in values)
    return equal if op == "=" else not equal


async def meili_athletes(db: Database, scope: AthleteScope) -> set[int]:
    ids = [r["id"] for r in await db.pool.fetch("SELECT id FROM athletes")]
    rows = await search_docs.documents(db.pool, kind="ATHLETE", ids=ids)
    clause = athlete_filter(scope)
    return {r["id"] for r in rows if meili_admits(clause, document(r))}


EXPECTED_ATHLETES = {  # viewer → {athlete: access}; absent means NONE
    "admin": {"a1": "FULL", "a2": "FULL", "a3": "FULL", "a4": "FULL"},
    "coach current": {"a1": "FULL", "a2": "PROFILE", "a4": "PROFILE"},
    "coach former": {"a2": "PROFILE", "a4": "PROFILE"},
    "other coach": {"a2": "PROFILE", "a4": "FULL"},
    "the athlete": {"a1": "FULL"},
    "other athlete": {"a2": "FULL"},
    "anonymous": {},
}


async def test_athlete_rule_renderings_agree(factory: Factory) -> None:
    world = await matrix_world(factory)
    db = factory.db
    async with db.transaction() as conn:
        await search_docs.rebuild(conn, batch=Limits().search_rebuild_batch)
    names = {raw: name for name, raw in world.athletes.items()}
    for viewer_name, viewer in world.viewers.items():
        scope = policy.athletes_visible_to(viewer)
        grants = await python_athletes(db, scope)
        seen = {names[i]: g.name for i, g in grants.items() if g is not AthleteAccess.NONE}
        assert seen == EXPECTED_ATHLETES[viewer_name], viewer_name
        python = {i for i, g in grants.items() if g is not AthleteAccess.NONE}
        assert await sql_athletes(db, scope) == python, viewer_name
        assert await document_athletes(db, scope) == python, viewer_name
        assert await meili_athletes(db, scope) == python, viewer_name


async def python_sessions(db: Database, scope: SessionScope) -> set[int]:
    rows = await db.pool.fetch(
        """SELECT s.id, s.coach_id, s.athlete_id, EXISTS (SELECT 1 FROM coach_athletes ca
               WHERE ca.coach_id = s.coach_id AND ca.athlete_id = s.athlete_id) AS coached
           FROM training_sessions s"""
    )
    return {
        r["id"]
        for r in rows
        if policy.session_admits(scope, SessionFacts(r["coach_id"], r["athlete_id"], r["coached"]))
    }


async def sql_sessions(db: Database, scope: SessionScope) -> set[int]:
    rows = await db.pool.fetch(
        f"SELECT s.id FROM training_sessions s WHERE {session_scope_sql(1)}",
        *session_scope_args(scope),
    )
    return {r["id"] for r in rows}


EXPECTED_SESSIONS = {  # viewer → (read, managed, samples and media)
    "admin": ({"current", "former", "other"},) * 3,
    "coach current": ({"current"},) * 3,
    "coach former": ({"former"}, set(), set()),
    "other coach": ({"other"},) * 3,
    "the athlete": ({"current", "former"}, set(), {"current", "former"}),
    "other athlete": (set(), set(), set()),
    "anonymous": (set(), set(), set()),
}


async def test_session_rule_renderings_agree(factory: Factory) -> None:
    world = await matrix_world(factory)
    names = {raw: name for name, raw in world.sessions.items()}
    for viewer_name, viewer in world.viewers.items():
        scopes = (
            policy.sessions_visible_to(viewer),
            policy.sessions_managed_by(viewer),
            policy.session_data_writable_by(viewer),
        )
        for scope, expected in zip(scopes, EXPECTED_SESSIONS[viewer_name], strict=True):
            python = await python_sessions(factory.db, scope)
            assert {names[i] for i in python} == expected, (viewer_name, scope)
            assert await sql_sessions(factory.db, scope) == python, (viewer_name, scope)
