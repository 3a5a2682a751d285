"""matchCoaches, matchAthletes, recommendPrograms and skillPath through GraphQL."""

from __future__ import annotations

from typing import Any

import pytest

from coachgraph.graph import recommend
from coachgraph.graph.blend import astuple
from coachgraph.ids import to_global_id as gid
from coachgraph.runtime import Resources
from coachgraph.stores import athletes, collab_weights
from coachgraph.stores.collab_weights import Fitted
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

MATCH = """query($a: ID!, $first: Int) { matchCoaches(athleteId: $a, first: $first) {
  score coach { name skills { skill { name } } }
  reasons { sharedSkills { name } goalsCovered { name } similarAthletes summary } } }"""


async def caught_up(app_resources: tuple[Any, Resources]) -> None:
    """Tests empty the tables without events; rebuild so earlier tests leave no nodes behind."""
    await app_resources[1].projector.rebuild()
    await app_resources[1].projector.catch_up()


async def world(factory: Factory, coaches: int = 2) -> tuple[int, list[int], list[int]]:
    g1, g2 = await factory.skill(name="Goal one"), await factory.skill(name="Goal two")
    athlete = await factory.athlete(name="Seeker", looking_for_coach=True)
    async with factory.db.transaction() as conn:
        await athletes.set_goals(conn, athlete_id=athlete.id, skill_ids=[g1.id, g2.id])
    made = []
    for i in range(coaches):
        coach = await factory.coach(name=f"Coach {i}")
        await factory.teach(coach.id, g1.id, level=5)
        if i == 0:
            await factory.teach(coach.id, g2.id, level=4)
        made.append(coach.id)
    return athlete.id, made, [g1.id, g2.id]


async def test_match_coaches_with_reasons(
    gql: GraphQLClient, factory: Factory, app_resources: tuple[Any, Resources]
) -> None:
    athlete, _, _ = await world(factory)
    await caught_up(app_resources)
    body = await gql(MATCH, {"a": gid("Athlete", athlete)}, token=token_for("athlete", athlete))
    assert "errors" not in body, body
    matches = body["data"]["matchCoaches"]
    assert [m["coach"]["name"] for m in matches] == ["Coach 0", "Coach 1"]
    assert matches[0]["reasons"]["goalsCovered"] == [{"name": "Goal one"}, {"name": "Goal two"}]
    assert "2 of 2 goals" in matches[0]["reasons"]["summary"]
    assert matches[0]["score"] > matches[1]["score"]


async def test_a_match_the_records_no_longer_hold_is_left_out(
    gql: GraphQLClient, factory: Factory, app_resources: tuple[Any, Resources]
) -> None:
    """The graph lags the records: a coach it still holds but Postgres does not is dropped
    from the list, not a NOT_FOUND for the whole of it."""
    athlete, coaches, _ = await world(factory)
    await caught_up(app_resources)
    # behind the projector's back: no outbox event, so the graph keeps the node
    await factory.db.pool.execute("DELETE FROM coaches WHERE id = $1", coaches[0])
    body = await gql(MATCH, {"a": gid("Athlete", athlete)}, token=token_for("athlete", athlete))
    assert "errors" not in body, body
    assert [m["coach"]["name"] for m in body["data"]["matchCoaches"]] == ["Coach 1"]


@pytest.mark.parametrize(
    ("who", "allowed"),
    [("self", True), ("admin", True), ("other_athlete", False), ("coach", False), (None, False)],
)
async def test_match_coaches_policy(
    gql: GraphQLClient,
    factory: Factory,
    app_resources: tuple[Any, Resources],
    who: str | None,
    allowed: bool,
) -> None:
    athlete, coaches, _ = await world(factory)
    other = await factory.athlete()
    await caught_up(app_resources)
    token = {
        "self": token_for("athlete", athlete),
        "admin": token_for("admin"),
        "other_athlete": token_for("athlete", other.id),
        "coach": token_for("coach", coaches[0]),
        None: None,
    }[who]
    body = await gql(MATCH, {"a": gid("Athlete", athlete)}, token=token)
    if allowed:
        assert len(body["data"]["matchCoaches"]) == 2
    else:
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_match_athletes_and_programs_and_path(
    gql: GraphQLClient, factory: Factory, app_resources: tuple[Any, Resources]
) -> None:
    athlete, coaches, goals = await world(factory)
    program = await factory.program(coaches[0], goals, level=2)
    await caught_up(app_resources)
    body = await gql(
        """query($c: ID!) { matchAthletes(coachId: $c) { score athlete { name goals { name } }
            reasons { goalsCovered { name } summary } } }""",
        {"c": gid("Coach", coaches[0])},
        token=token_for("coach", coaches[0]),
    )
    assert [m["athlete"]["name"] for m in body["data"]["matchAthletes"]] == ["Seeker"]
    body = await gql(
        """query($a: ID!) { recommendPrograms(athleteId: $a) { score program { title }
            reasons { goalsCovered { name } } } }""",
        {"a": gid("Athlete", athlete)},
        token=token_for("athlete", athlete),
    )
    recs = body["data"]["recommendPrograms"]
    assert [r["program"]["title"] for r in recs] == [program.title]
    assert len(recs[0]["reasons"]["goalsCovered"]) == 2
    body = await gql(
        """query($a: ID!, $t: ID!) { skillPath(athleteId: $a, targetSkillId: $t) {
            skills { name } programs { title } } }""",
        {"a": gid("Athlete", athlete), "t": gid("Skill", goals[1])},
        token=token_for("athlete", athlete),
    )
    assert body["data"]["skillPath"] == {
        "skills": [{"name": "Goal two"}],
        "programs": [{"title": program.title}],
    }


async def test_match_input_errors(gql: GraphQLClient, factory: Factory) -> None:
    body = await gql(MATCH, {"a": gid("Coach", 1)}, token=token_for("admin"))
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await gql(MATCH, {"a": gid("Athlete", 999)}, token=token_for("admin"))
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    athlete = await factory.athlete()
    body = await gql(
        MATCH, {"a": gid("Athlete", athlete.id), "first": 1000}, token=token_for("admin")
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


class CountingGraph:
    """Counts calls into the graph backend it wraps."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not name.endswith("neighbourhood"):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await attr(*args, **kwargs)

        return counted


async def test_match_round_trips_are_flat(
    gql: GraphQLClient, factory: Factory, app_resources: tuple[Any, Resources]
) -> None:
    resources = app_resources[1]
    query = """query($a: ID!) { matchCoaches(athleteId: $a, first: 10) {
        coach { name skills { skill { name } } } reasons { goalsCovered { name } } } }"""
    counts = []
    for size in (3, 12):
        await factory.db.pool.execute(
            "TRUNCATE coaches, athletes, skills, outbox RESTART IDENTITY CASCADE"
        )
        athlete, _, _ = await world(factory, coaches=size)
        await resources.projector.rebuild()
        counter = CountingGraph(resources.graph)
        resources.graph = counter  # type: ignore[assignment]
        try:
            token = token_for("athlete", athlete)
            await gql(query, {"a": gid("Athlete", athlete)}, token=token)  # warm-up
            counter.calls = 0
            body, statements = await gql.statements(
                query, {"a": gid("Athlete", athlete)}, token=token
            )
        finally:
            resources.graph = counter.inner
        assert len(body["data"]["matchCoaches"]) == min(size, 10)
        assert counter.calls == 1
        counts.append(statements)
    assert counts[0] == counts[1], counts
    # coaches, their skills, goal skills (+ the viewer's athlete row); with the learned signal
    # on, two more (test_match_coaches_says_who_chose_the_coach): the nearest coaches before
    # the graph call, the similarities after it
    assert counts[0] <= 4


async def test_recommend_programs_never_answers_empty_while_the_sport_has_programs(
    gql: GraphQLClient, factory: Factory, app_resources: tuple[Any, Resources]
) -> None:
    athlete, coaches, goals = await world(factory)
    third = await factory.skill(name="Goal three")
    async with factory.db.transaction() as conn:
        await athletes.set_goals(conn, athlete_id=athlete, skill_ids=[*goals, third.id])
    hard = await factory.program(coaches[0], goals, level=5, title="Hard")
    await factory.program(coaches[0], goals, level=5, title="Rowing", sport="rowing")
    await caught_up(app_resources)
    query = """query($a: ID!) { recommendPrograms(athleteId: $a) { score program { title }
        reasons { goalsCovered { name } summary } } }"""
    body = await gql(query, {"a": gid("Athlete", athlete)}, token=token_for("athlete", athlete))
    assert "errors" not in body, body
    recs = body["data"]["recommendPrograms"]
    assert [r["program"]["title"] for r in recs] == [hard.title]
    summary = recs[0]["reasons"]["summary"]
    assert "Develops 2 of 3 goals" in summary and "above your level (5, yours 2)" in summary


async def test_match_coaches_says_who_chose_the_coach(
    gql: GraphQLClient,
    factory: Factory,
    app_resources: tuple[Any, Resources],
    learned_matching: None,
) -> None:
    athlete, coaches, goals = await world(factory)
    for i in range(2):
        mate = await factory.athlete(name=f"Mate {i}")
        async with factory.db.transaction() as conn:
            await athletes.set_goals(conn, athlete_id=mate.id, skill_ids=goals)
        await factory.assign(coaches[0], mate.id)
    await caught_up(app_resources)
    # a deployment whose fit chose the learned blend (graph/blend.py)
    async with factory.db.transaction() as conn:
        await collab_weights.save(
            conn, Fitted(astuple(recommend.WEIGHTS), 400, 0.1, 0.2, [], "fitted")
        )
    body = await gql(MATCH, {"a": gid("Athlete", athlete)}, token=token_for("athlete", athlete))
    assert "errors" not in body, body
    first = body["data"]["matchCoaches"][0]
    assert first["coach"]["name"] == "Coach 0"
    assert first["reasons"]["similarAthletes"] == 2
    assert "chosen by 2 athletes with goals like yours" in first["reasons"]["summary"]
    _, statements = await gql.statements(
        MATCH, {"a": gid("Athlete", athlete)}, token=token_for("athlete", athlete)
    )
    assert statements <= 6  # the content ranking's four and the learned signal's two
