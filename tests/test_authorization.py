"""The authorization table of API.md, role by operation; refusals write nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from coachgraph.ids import to_global_id as gid
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

ROLES = ("anonymous", "athlete", "other_athlete", "coach", "other_coach", "admin")


@dataclass
class World:
    c1: int
    c2: int
    a1: int  # coached by c1
    a2: int  # nobody's, not looking
    a3: int  # looking for a coach
    skill: int
    program: int
    scheduled: int
    live: int

    def token(self, role: str) -> str | None:
        return {
            "anonymous": None,
            "athlete": token_for("athlete", self.a1),
            "other_athlete": token_for("athlete", self.a2),
            "coach": token_for("coach", self.c1),
            "other_coach": token_for("coach", self.c2),
            "admin": token_for("admin"),
        }[role]


async def build_world(factory: Factory) -> World:
    c1 = await factory.coach(name="C1")
    c2 = await factory.coach(name="C2")
    a1 = await factory.athlete(name="A1")
    a2 = await factory.athlete(name="A2")
    a3 = await factory.athlete(name="A3", looking_for_coach=True)
    skill = await factory.skill()
    program = await factory.program(c1.id, [skill.id])
    await factory.assign(c1.id, a1.id)
    scheduled = await factory.session(c1.id, a1.id)
    live = await factory.session(c1.id, a1.id)
    await factory.db.pool.execute(
        "UPDATE training_sessions SET status = 'LIVE', started_at = now() WHERE id = $1", live.id
    )
    return World(c1.id, c2.id, a1.id, a2.id, a3.id, skill.id, program.id, scheduled.id, live.id)


def mutations(w: World) -> dict[str, tuple[str, str, dict[str, Any], set[str]]]:
    """name → (document, success typename, variables, roles allowed)."""
    c1, a1 = gid("Coach", w.c1), gid("Athlete", w.a1)
    skill = gid("Skill", w.skill)
    return {
        "createCoach": (
            'createCoach(input: {name: "N", sports: ["running"], timezone: "UTC", capacity: 2})',
            "Coach",
            {},
            {"admin"},
        ),
        "updateCoach": (
            f'updateCoach(id: "{c1}", input: {{bio: "b"}})',
            "Coach",
            {},
            {"admin", "coach"},
        ),
        "createAthlete": (
            'createAthlete(input: {name: "N", sport: "running", timezone: "UTC", level: 1})',
            "Athlete",
            {},
            {"admin"},
        ),
        "updateAthlete": (
            f'updateAthlete(id: "{a1}", input: {{city: "Oslo"}})',
            "Athlete",
            {},
            {"admin", "athlete"},
        ),
        "createSkill": (
            'createSkill(input: {slug: "new-skill", name: "N", sport: "running"})',
            "Skill",
            {},
            {"admin"},
        ),
        "setCoachSkill": (
            f'setCoachSkill(coachId: "{c1}", skillId: "{skill}", level: 3)',
            "Coach",
            {},
            {"admin", "coach"},
        ),
        "setAthleteSkill": (
            f'setAthleteSkill(athleteId: "{a1}", skillId: "{skill}", level: 3)',
            "Athlete",
            {},
            {"admin", "athlete"},
        ),
        "setAthleteGoals": (
            f'setAthleteGoals(athleteId: "{a1}", skillIds: ["{skill}"])',
            "Athlete",
            {},
            {"admin", "athlete"},
        ),
        "createProgram": (
            f'createProgram(input: {{coachId: "{c1}", title: "T", sport: "running", level: 1, '
            f'durationWeeks: 4, skillIds: ["{skill}"]}})',
            "Program",
            {},
            {"admin", "coach"},
        ),
        "enroll": (
            f'enroll(athleteId: "{a1}", programId: "{gid("Program", w.program)}")',
            "Enrollment",
            {},
            {"admin", "athlete"},
        ),
        "assignCoach": (
            f'assignCoach(coachId: "{c1}", athleteId: "{gid("Athlete", w.a3)}")',
            "Athlete",
            {},
            {"admin", "coach"},
        ),
        "unassignCoach": (
            f'unassignCoach(coachId: "{c1}", athleteId: "{a1}")',
            "Athlete",
            {},
            {"admin", "coach"},
        ),
        "scheduleSession": (
            f'scheduleSession(input: {{coachId: "{c1}", athleteId: "{a1}", scheduledAt: "2026-12-01T10:00:00Z"}})',
            "TrainingSession",
            {},
            {"admin", "coach"},
        ),
        "startSession": (
            f'startSession(id: "{gid("TrainingSession", w.scheduled)}")',
            "TrainingSession",
            {},
            {"admin", "coach"},
        ),
        "endSession": (
            f'endSession(id: "{gid("TrainingSession", w.live)}")',
            "TrainingSession",
            {},
            {"admin", "coach"},
        ),
    }


MUTATIONS = [
    "createCoach",
    "updateCoach",
    "createAthlete",
    "updateAthlete",
    "createSkill",
    "setCoachSkill",
    "setAthleteSkill",
    "setAthleteGoals",
    "createProgram",
    "enroll",
    "assignCoach",
    "unassignCoach",
    "scheduleSession",
    "startSession",
    "endSession",
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", MUTATIONS)
async def test_mutation_matrix(gql: GraphQLClient, factory: Factory, name: str, role: str) -> None:
    world = await build_world(factory)
    call, success, variables, allowed = mutations(world)[name]
    before = await factory.snapshot()
    body = await gql(
        f"mutation {{ {name}: {call} {{ __typename ... on UserError {{ message }} }} }}",
        variables,
        token=world.token(role),
    )
    assert "errors" not in body, body
    typename = body["data"][name]["__typename"]
    if role in allowed:
        assert typename == success, body
        assert (await factory.snapshot())["outbox"] > before["outbox"]
    else:
        assert typename == "PermissionDeniedError", body
        assert await factory.snapshot() == before


ATHLETES = "{ athletes { edges { node { name } } } }"


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("athlete", ["A1"]),
        ("other_athlete", ["A2"]),
        ("coach", ["A1", "A3"]),
        ("other_coach", ["A3"]),
        ("admin", ["A1", "A2", "A3"]),
    ],
)
async def test_athletes_list_is_scoped(
    gql: GraphQLClient, factory: Factory, role: str, expected: list[str]
) -> None:
    world = await build_world(factory)
    body = await gql(ATHLETES, token=world.token(role))
    assert [e["node"]["name"] for e in body["data"]["athletes"]["edges"]] == expected


async def test_anonymous_cannot_list_athletes(gql: GraphQLClient, factory: Factory) -> None:
    world = await build_world(factory)
    body = await gql(ATHLETES, token=world.token("anonymous"))
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


FULL = "query($id: ID!) { node(id: $id) { ... on Athlete { name coaches { name } enrollments { status } sessions { totalCount } } } }"
PROFILE = (
    "query($id: ID!) { node(id: $id) { ... on Athlete { name skills { level } goals { name } } } }"
)


@pytest.mark.parametrize(
    ("role", "full", "profile"),
    [
        ("anonymous", False, False),
        ("athlete", True, True),
        ("other_athlete", False, False),
        ("coach", True, True),
        ("other_coach", False, False),
        ("admin", True, True),
    ],
)
async def test_reading_a_coached_athlete(
    gql: GraphQLClient, factory: Factory, role: str, full: bool, profile: bool
) -> None:
    world = await build_world(factory)
    variables = {"id": gid("Athlete", world.a1)}
    for query, allowed in ((FULL, full), (PROFILE, profile)):
        body = await gql(query, variables, token=world.token(role))
        if allowed:
            assert "errors" not in body, body
            assert body["data"]["node"]["name"] == "A1"
        else:
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_coach_sees_only_the_profile_of_a_looking_athlete(
    gql: GraphQLClient, factory: Factory
) -> None:
    world = await build_world(factory)
    variables = {"id": gid("Athlete", world.a3)}
    token = world.token("other_coach")
    body = await gql(PROFILE, variables, token=token)
    assert body["data"]["node"]["name"] == "A3"
    body = await gql(FULL, variables, token=token)
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    assert body["data"]["node"] is None


SESSION = "query($id: ID!) { node(id: $id) { ... on TrainingSession { status athlete { name } } } }"


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("anonymous", False),
        ("athlete", True),
        ("other_athlete", False),
        ("coach", True),
        ("other_coach", False),
        ("admin", True),
    ],
)
async def test_reading_a_session(
    gql: GraphQLClient, factory: Factory, role: str, allowed: bool
) -> None:
    world = await build_world(factory)
    body = await gql(
        SESSION, {"id": gid("TrainingSession", world.scheduled)}, token=world.token(role)
    )
    if allowed:
        assert body["data"]["node"] == {"status": "SCHEDULED", "athlete": {"name": "A1"}}
    else:
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    ("role", "athletes", "sessions"),
    [
        ("anonymous", [], 0),
        ("athlete", ["A1"], 2),
        ("other_athlete", [], 0),
        ("coach", ["A1"], 2),
        ("other_coach", [], 0),
        ("admin", ["A1"], 2),
    ],
)
async def test_public_coach_with_private_lists(
    gql: GraphQLClient, factory: Factory, role: str, athletes: list[str], sessions: int
) -> None:
    world = await build_world(factory)
    body = await gql(
        """query($id: ID!) { node(id: $id) { ... on Coach { name
            athletes { totalCount edges { node { name } } } sessions { totalCount } } } }""",
        {"id": gid("Coach", world.c1)},
        token=world.token(role),
    )
    node = body["data"]["node"]
    assert node["name"] == "C1"
    assert [e["node"]["name"] for e in node["athletes"]["edges"]] == athletes
    assert node["athletes"]["totalCount"] == len(athletes)
    assert node["sessions"]["totalCount"] == sessions


async def test_public_catalogue_for_anonymous(gql: GraphQLClient, factory: Factory) -> None:
    await build_world(factory)
    body = await gql(
        "{ coaches { totalCount } skills { totalCount } programs { totalCount edges { node { coach { name } } } } }"
    )
    assert "errors" not in body
    assert body["data"]["coaches"]["totalCount"] == 2
    assert body["data"]["programs"]["edges"][0]["node"]["coach"]["name"] == "C1"
