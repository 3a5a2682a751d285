"""Every node a search returns passes the read rule of node(id:) now, though the index lags
the records (the projector has not run in these tests when the records change)."""

from __future__ import annotations

from typing import Any

from coachgraph.ids import to_global_id as gid
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

SEARCH = """query($q: String!) { search(query: $q, kinds: [ATHLETE], first: 10) {
    totalCount edges { cursor node { ... on Athlete { name } } } pageInfo { hasNextPage } } }"""
NODE = "query($id: ID!) { node(id: $id) { ... on Athlete { name } } }"


async def found(sgql: GraphQLClient, q: str, token: str) -> tuple[list[str], int]:
    body = await sgql(SEARCH, {"q": q}, token)
    assert "errors" not in body, body
    result = body["data"]["search"]
    return sorted(e["node"]["name"] for e in result["edges"]), result["totalCount"]


async def test_an_athlete_that_stopped_looking_is_not_found(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    scout = await factory.coach(name="Scout")
    leaving = await factory.athlete(name="Zephyr Leaving", looking_for_coach=True)
    await factory.athlete(name="Zephyr Staying", looking_for_coach=True)
    await project()
    token = token_for("coach", scout.id)
    assert await found(sgql, "zephyr", token) == (["Zephyr Leaving", "Zephyr Staying"], 2)
    body = await sgql(
        """mutation($id: ID!) { updateAthlete(id: $id, input: {lookingForCoach: false}) {
            __typename } }""",
        {"id": gid("Athlete", leaving.id)},
        token_for("athlete", leaving.id),
    )
    assert body["data"]["updateAthlete"]["__typename"] == "Athlete", body
    # the index still holds it as looking; the search drops it, as node(id:) refuses it
    assert await found(sgql, "zephyr", token) == (["Zephyr Staying"], 1)
    denied = await sgql(NODE, {"id": gid("Athlete", leaving.id)}, token)
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    await project()
    assert await found(sgql, "zephyr", token) == (["Zephyr Staying"], 1)


async def test_a_former_coach_no_longer_finds_its_athlete(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    coach = await factory.coach(name="Mentor")
    pupil = await factory.athlete(name="Quokka Pupil")  # not looking: only its coach finds it
    await factory.assign(coach.id, pupil.id)
    await project()
    token = token_for("coach", coach.id)
    assert await found(sgql, "quokka", token) == (["Quokka Pupil"], 1)
    body = await sgql(
        """mutation($c: ID!, $a: ID!) { unassignCoach(coachId: $c, athleteId: $a) {
            __typename } }""",
        {"c": gid("Coach", coach.id), "a": gid("Athlete", pupil.id)},
        token,
    )
    assert body["data"]["unassignCoach"]["__typename"] == "Athlete", body
    assert await found(sgql, "quokka", token) == ([], 0)
    assert await found(sgql, "quokka", token_for("admin")) == (["Quokka Pupil"], 1)


async def test_a_change_the_projector_never_sees_is_still_checked(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    scout = await factory.coach(name="Scout")
    await factory.athlete(name="Ibis Hidden", looking_for_coach=True)
    await project()
    # written behind the outbox's back: the index will hold the old value until a rebuild
    await factory.db.pool.execute("UPDATE athletes SET looking_for_coach = false")
    await project()
    assert await found(sgql, "ibis", token_for("coach", scout.id)) == ([], 0)
