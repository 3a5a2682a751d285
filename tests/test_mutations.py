"""Writes: every mutation, its outbox event, typed errors, and capacity under concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

from coachgraph.ids import to_global_id
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

ERRORS = """
  ... on UserError { __typename message }
  ... on ValidationError { field code }
  ... on NotFoundError { id }
"""


def gid(type_name: str, raw: int) -> str:
    return to_global_id(type_name, raw)


async def events(factory: Factory) -> list[tuple[str, str]]:
    rows = await factory.db.pool.fetch("SELECT aggregate, event FROM outbox ORDER BY id")
    return [(r["aggregate"], r["event"]) for r in rows]


async def test_create_and_update_coach(gql: GraphQLClient, factory: Factory) -> None:
    admin = token_for("admin")
    body = await gql(
        f"""mutation($i: CreateCoachInput!) {{ createCoach(input: $i) {{
            ... on Coach {{ id name sports timezone capacity acceptingAthletes city }} {ERRORS} }} }}""",
        {
            "i": {
                "name": " Ana ",
                "sports": ["Running", "running"],
                "timezone": "Europe/Paris",
                "capacity": 3,
                "city": "Lyon",
            }
        },
        token=admin,
    )
    coach = body["data"]["createCoach"]
    assert coach["name"] == "Ana" and coach["sports"] == ["running"]
    assert coach["acceptingAthletes"] is True
    body = await gql(
        f"""mutation($id: ID!, $i: UpdateCoachInput!) {{ updateCoach(id: $id, input: $i) {{
            ... on Coach {{ name headline city capacity }} {ERRORS} }} }}""",
        {"id": coach["id"], "i": {"headline": "Marathon coach", "city": None}},
        token=admin,
    )
    assert body["data"]["updateCoach"] == {
        "name": "Ana",
        "headline": "Marathon coach",
        "city": None,
        "capacity": 3,
    }
    assert await events(factory) == [("coach", "coach.created"), ("coach", "coach.updated")]


async def test_create_and_update_athlete(gql: GraphQLClient, factory: Factory) -> None:
    admin = token_for("admin")
    body = await gql(
        f"""mutation($i: CreateAthleteInput!) {{ createAthlete(input: $i) {{
            ... on Athlete {{ id name sport level lookingForCoach }} {ERRORS} }} }}""",
        {"i": {"name": "José", "sport": "swimming", "timezone": "UTC", "level": 3}},
        token=admin,
    )
    athlete = body["data"]["createAthlete"]
    assert athlete["lookingForCoach"] is False and athlete["level"] == 3
    me = token_for("athlete", int(await factory.db.pool.fetchval("SELECT max(id) FROM athletes")))
    body = await gql(
        f"""mutation($id: ID!) {{ updateAthlete(id: $id, input: {{lookingForCoach: true, level: 4}}) {{
            ... on Athlete {{ level lookingForCoach }} {ERRORS} }} }}""",
        {"id": athlete["id"]},
        token=me,
    )
    assert body["data"]["updateAthlete"] == {"level": 4, "lookingForCoach": True}


async def test_create_skill_with_prerequisites(gql: GraphQLClient, factory: Factory) -> None:
    admin = token_for("admin")
    base = await factory.skill(name="Base")
    body = await gql(
        f"""mutation($i: CreateSkillInput!) {{ createSkill(input: $i) {{
            ... on Skill {{ slug name sport prerequisites {{ name }} }} {ERRORS} }} }}""",
        {
            "i": {
                "slug": "flip-turn",
                "name": "Flip turn",
                "sport": "Swimming",
                "prerequisiteIds": [gid("Skill", base.id)],
            }
        },
        token=admin,
    )
    assert body["data"]["createSkill"] == {
        "slug": "flip-turn",
        "name": "Flip turn",
        "sport": "swimming",
        "prerequisites": [{"name": "Base"}],
    }
    again = await gql(
        f"""mutation {{ createSkill(input: {{slug: "flip-turn", name: "x", sport: "s"}}) {{
            ... on Skill {{ id }} {ERRORS} }} }}""",
        token=admin,
    )
    assert again["data"]["createSkill"]["__typename"] == "ConflictError"


async def test_skills_goals_programs_enrollment(gql: GraphQLClient, factory: Factory) -> None:
    coach = await factory.coach()
    athlete = await factory.athlete()
    a, b = await factory.skill(name="A"), await factory.skill(name="B")
    body = await gql(
        f"""mutation($c: ID!, $s: ID!) {{ setCoachSkill(coachId: $c, skillId: $s, level: 4) {{
            ... on Coach {{ skills {{ level skill {{ name }} }} }} {ERRORS} }} }}""",
        {"c": gid("Coach", coach.id), "s": gid("Skill", a.id)},
        token=token_for("coach", coach.id),
    )
    assert body["data"]["setCoachSkill"]["skills"] == [{"level": 4, "skill": {"name": "A"}}]
    me = token_for("athlete", athlete.id)
    body = await gql(
        f"""mutation($a: ID!, $s: ID!) {{ setAthleteSkill(athleteId: $a, skillId: $s, level: 2) {{
            ... on Athlete {{ skills {{ level skill {{ name }} }} }} {ERRORS} }} }}""",
        {"a": gid("Athlete", athlete.id), "s": gid("Skill", a.id)},
        token=me,
    )
    assert body["data"]["setAthleteSkill"]["skills"] == [{"level": 2, "skill": {"name": "A"}}]
    body = await gql(
        f"""mutation($a: ID!, $s: [ID!]!) {{ setAthleteGoals(athleteId: $a, skillIds: $s) {{
            ... on Athlete {{ goals {{ name }} }} {ERRORS} }} }}""",
        {"a": gid("Athlete", athlete.id), "s": [gid("Skill", b.id), gid("Skill", a.id)]},
        token=me,
    )
    assert body["data"]["setAthleteGoals"]["goals"] == [{"name": "A"}, {"name": "B"}]
    body = await gql(
        f"""mutation($i: CreateProgramInput!) {{ createProgram(input: $i) {{
            ... on Program {{ id title level durationWeeks skills {{ name }} coach {{ id }} }} {ERRORS} }} }}""",
        {
            "i": {
                "coachId": gid("Coach", coach.id),
                "title": "Base block",
                "sport": "running",
                "level": 2,
                "durationWeeks": 6,
                "skillIds": [gid("Skill", a.id)],
            }
        },
        token=token_for("coach", coach.id),
    )
    program = body["data"]["createProgram"]
    assert program["skills"] == [{"name": "A"}] and program["coach"]["id"] == gid("Coach", coach.id)
    enroll = f"""mutation($a: ID!, $p: ID!) {{ enroll(athleteId: $a, programId: $p) {{
        ... on Enrollment {{ status program {{ title enrollmentCount }} athlete {{ id }} }} {ERRORS} }} }}"""
    body = await gql(enroll, {"a": gid("Athlete", athlete.id), "p": program["id"]}, token=me)
    assert body["data"]["enroll"]["status"] == "ACTIVE"
    assert body["data"]["enroll"]["program"] == {"title": "Base block", "enrollmentCount": 1}
    body = await gql(enroll, {"a": gid("Athlete", athlete.id), "p": program["id"]}, token=me)
    assert body["data"]["enroll"]["__typename"] == "ConflictError"
    body = await gql(
        "query($a: ID!) { node(id: $a) { ... on Athlete { enrollments { program { title } } } } }",
        {"a": gid("Athlete", athlete.id)},
        token=me,
    )
    assert body["data"]["node"]["enrollments"] == [{"program": {"title": "Base block"}}]


async def test_session_lifecycle(gql: GraphQLClient, factory: Factory) -> None:
    coach = await factory.coach()
    athlete = await factory.athlete()
    mine = token_for("coach", coach.id)
    schedule = f"""mutation($i: ScheduleSessionInput!) {{ scheduleSession(input: $i) {{
        ... on TrainingSession {{ id status scheduledAt coach {{ id }} athlete {{ id }} }} {ERRORS} }} }}"""
    variables: dict[str, Any] = {
        "i": {
            "coachId": gid("Coach", coach.id),
            "athleteId": gid("Athlete", athlete.id),
            "scheduledAt": "2026-12-01T09:00:00+01:00",
        }
    }
    body = await gql(schedule, variables, token=mine)
    # not its athlete (API.md: sessions only with athletes it coaches)
    assert body["data"]["scheduleSession"]["__typename"] == "PermissionDeniedError"
    await factory.assign(coach.id, athlete.id)
    body = await gql(schedule, variables, token=mine)
    session = body["data"]["scheduleSession"]
    assert session["status"] == "SCHEDULED"
    move = f"""mutation($id: ID!) {{ %s(id: $id) {{
        ... on TrainingSession {{ status startedAt endedAt }} {ERRORS} }} }}"""
    end_early = await gql(move % "endSession", {"id": session["id"]}, token=mine)
    assert end_early["data"]["endSession"]["__typename"] == "ConflictError"
    started = await gql(move % "startSession", {"id": session["id"]}, token=mine)
    assert started["data"]["startSession"]["status"] == "LIVE"
    assert started["data"]["startSession"]["startedAt"] is not None
    ended = await gql(move % "endSession", {"id": session["id"]}, token=mine)
    assert ended["data"]["endSession"]["status"] == "COMPLETED"
    body = await gql(
        "query($c: ID!) { node(id: $c) { ... on Coach { sessions(status: COMPLETED) { totalCount edges { node { id } } } } } }",
        {"c": gid("Coach", coach.id)},
        token=mine,
    )
    assert body["data"]["node"]["sessions"]["totalCount"] == 1


async def test_assign_coach_enforces_capacity_under_concurrency(
    gql: GraphQLClient, factory: Factory
) -> None:
    coach = await factory.coach(capacity=2)
    first, second, third = [await factory.athlete() for _ in range(3)]
    await factory.assign(coach.id, first.id)
    admin = token_for("admin")
    assign = f"""mutation($c: ID!, $a: ID!) {{ assignCoach(coachId: $c, athleteId: $a) {{
        ... on Athlete {{ id coaches {{ id }} }} {ERRORS} }} }}"""
    results = await asyncio.gather(
        *[
            gql(assign, {"c": gid("Coach", coach.id), "a": gid("Athlete", a.id)}, token=admin)
            for a in (second, third)
        ]
    )
    kinds = sorted(r["data"]["assignCoach"].get("__typename", "Athlete") for r in results)
    assert kinds == ["Athlete", "ConflictError"]
    assert await factory.count("coach_athletes") == 2
    count = await factory.db.pool.fetchval(
        "SELECT active_athlete_count FROM coaches WHERE id = $1", coach.id
    )
    assert count == 2
    # a place freed by unassigning can be taken again
    winner = next(
        r["data"]["assignCoach"]["id"] for r in results if "coaches" in r["data"]["assignCoach"]
    )
    loser = third if winner == gid("Athlete", second.id) else second
    unassign = assign.replace("assignCoach", "unassignCoach")
    await gql(unassign, {"c": gid("Coach", coach.id), "a": winner}, token=admin)
    body = await gql(
        assign, {"c": gid("Coach", coach.id), "a": gid("Athlete", loser.id)}, token=admin
    )
    assert body["data"]["assignCoach"]["coaches"] == [{"id": gid("Coach", coach.id)}]


async def test_many_concurrent_assignments_never_exceed_capacity(
    gql: GraphQLClient, factory: Factory
) -> None:
    coach = await factory.coach(capacity=3)
    athletes = [await factory.athlete() for _ in range(8)]
    assign = f"""mutation($c: ID!, $a: ID!) {{ assignCoach(coachId: $c, athleteId: $a) {{
        ... on Athlete {{ id }} {ERRORS} }} }}"""
    results = await asyncio.gather(
        *[
            gql(
                assign,
                {"c": gid("Coach", coach.id), "a": gid("Athlete", a.id)},
                token=token_for("admin"),
            )
            for a in athletes
        ]
    )
    ok = [r for r in results if "id" in r["data"]["assignCoach"]]
    assert len(ok) == 3
    assert await factory.count("coach_athletes") == 3


async def test_capacity_cannot_drop_below_active_athletes(
    gql: GraphQLClient, factory: Factory
) -> None:
    coach = await factory.coach(capacity=2)
    for _ in range(2):
        await factory.assign(coach.id, (await factory.athlete()).id)
    body = await gql(
        f"""mutation($id: ID!) {{ updateCoach(id: $id, input: {{capacity: 1}}) {{
            ... on Coach {{ capacity }} {ERRORS} }} }}""",
        {"id": gid("Coach", coach.id)},
        token=token_for("admin"),
    )
    assert body["data"]["updateCoach"]["__typename"] == "ConflictError"
