"""Bad input gets a typed error or BAD_USER_INPUT and changes nothing."""

from __future__ import annotations

import pytest

from coachgraph.ids import to_global_id as gid
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

RESULT = "{ __typename ... on UserError { message } ... on ValidationError { field code } ... on NotFoundError { id } }"


async def run(gql: GraphQLClient, call: str, token: str | None = None) -> dict[str, object]:
    body = await gql(f"mutation {{ r: {call} {RESULT} }}", token=token or token_for("admin"))
    assert "errors" not in body, body
    result: dict[str, object] = body["data"]["r"]
    return result


@pytest.mark.parametrize(
    ("call", "typename", "field"),
    [
        (
            'createCoach(input: {name: "", sports: ["run"], timezone: "UTC", capacity: 1})',
            "ValidationError",
            "name",
        ),
        (
            'createCoach(input: {name: "'
            + "x" * 201
            + '", sports: ["run"], timezone: "UTC", capacity: 1})',
            "ValidationError",
            "name",
        ),
        (
            'createCoach(input: {name: "N", sports: [], timezone: "UTC", capacity: 1})',
            "ValidationError",
            "sports",
        ),
        (
            'createCoach(input: {name: "N", sports: ["run"], timezone: "Mars/Olympus", capacity: 1})',
            "ValidationError",
            "timezone",
        ),
        (
            'createCoach(input: {name: "N", sports: ["run"], timezone: "UTC", capacity: -1})',
            "ValidationError",
            "capacity",
        ),
        (
            'createCoach(input: {name: "N", sports: ["run"], timezone: "UTC", capacity: 1, bio: "'
            + "b" * 10001
            + '"})',
            "ValidationError",
            "bio",
        ),
        (
            'createAthlete(input: {name: "N", sport: "run", timezone: "UTC", level: 6})',
            "ValidationError",
            "level",
        ),
        (
            'createAthlete(input: {name: "N", sport: "run", timezone: "UTC", level: 0})',
            "ValidationError",
            "level",
        ),
        (
            'createAthlete(input: {name: "a\\u0000b", sport: "run", timezone: "UTC", level: 1})',
            "ValidationError",
            "name",
        ),
        (
            'createSkill(input: {slug: "Not A Slug!", name: "N", sport: "run"})',
            "ValidationError",
            "slug",
        ),
        ('updateCoach(id: "garbage", input: {bio: "x"})', "ValidationError", "id"),
        ('updateCoach(id: "%s", input: {bio: "x"})' % gid("Athlete", 1), "ValidationError", "id"),
        ('updateCoach(id: "%s", input: {name: null})' % gid("Coach", 1), "ValidationError", "name"),
        ('updateCoach(id: "%s", input: {bio: "x"})' % gid("Coach", 999), "NotFoundError", None),
        (
            'setCoachSkill(coachId: "%s", skillId: "%s", level: 9)'
            % (gid("Coach", 1), gid("Skill", 1)),
            "ValidationError",
            "level",
        ),
        (
            'setCoachSkill(coachId: "%s", skillId: "%s", level: 3)'
            % (gid("Coach", 1), gid("Skill", 999)),
            "NotFoundError",
            None,
        ),
        (
            'setAthleteGoals(athleteId: "%s", skillIds: ["%s"])'
            % (gid("Athlete", 1), gid("Skill", 999)),
            "NotFoundError",
            None,
        ),
        (
            'setAthleteGoals(athleteId: "%s", skillIds: ["%s"])'
            % (gid("Athlete", 1), gid("Coach", 1)),
            "ValidationError",
            "skillIds",
        ),
        (
            'createProgram(input: {coachId: "%s", title: "T", sport: "run", level: 1, durationWeeks: 0, skillIds: []})'
            % gid("Coach", 1),
            "ValidationError",
            "durationWeeks",
        ),
        (
            'createProgram(input: {coachId: "%s", title: "T", sport: "run", level: 1, durationWeeks: 4, skillIds: ["%s"]})'
            % (gid("Coach", 1), gid("Skill", 999)),
            "NotFoundError",
            None,
        ),
        (
            'enroll(athleteId: "%s", programId: "%s")' % (gid("Athlete", 1), gid("Program", 999)),
            "NotFoundError",
            None,
        ),
        (
            'assignCoach(coachId: "%s", athleteId: "%s")' % (gid("Coach", 1), gid("Athlete", 999)),
            "NotFoundError",
            None,
        ),
        (
            'scheduleSession(input: {coachId: "%s", athleteId: "%s", scheduledAt: "2026-12-01T10:00:00"})'
            % (gid("Coach", 1), gid("Athlete", 1)),
            "ValidationError",
            "scheduledAt",
        ),
        ('startSession(id: "%s")' % gid("TrainingSession", 999), "NotFoundError", None),
    ],
)
async def test_bad_mutation_input_is_typed_and_writes_nothing(
    gql: GraphQLClient, factory: Factory, call: str, typename: str, field: str | None
) -> None:
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.skill()
    assert (coach.id, athlete.id) == (1, 1)
    before = await factory.snapshot()
    result = await run(gql, call)
    assert result["__typename"] == typename, result
    if field is not None:
        assert result["field"] == field
    assert await factory.snapshot() == before


async def test_too_many_ids_in_a_list(gql: GraphQLClient, factory: Factory) -> None:
    athlete = await factory.athlete()
    ids = ", ".join(f'"{gid("Skill", i)}"' for i in range(1, 102))
    result = await run(
        gql, f'setAthleteGoals(athleteId: "{gid("Athlete", athlete.id)}", skillIds: [{ids}])'
    )
    assert result["__typename"] == "ValidationError" and result["code"] == "TOO_MANY"


@pytest.mark.parametrize(
    "query",
    [
        "{ coaches(first: 1000) { totalCount } }",
        "{ coaches(first: -1) { totalCount } }",
        '{ coaches(after: "bogus") { totalCount } }',
        "{ skills(first: 101) { totalCount } }",
        "{ node(id: 42) { id } }",
        "{ coaches { edges { node { nope } } } }",
        "{ coaches ",
    ],
)
async def test_bad_query_input_is_bad_user_input(gql: GraphQLClient, query: str) -> None:
    body = await gql(query)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


async def test_malformed_variables(gql: GraphQLClient) -> None:
    body = await gql("query($f: Int) { coaches(first: $f) { totalCount } }", {"f": "many"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
