"""Reads: lists, pagination, filters, node, viewer, nested fields."""

from __future__ import annotations

from coachgraph.ids import to_global_id
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

COACHES = """query($first: Int, $after: String, $filter: CoachFilter) {
  coaches(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id name city sports capacity activeAthleteCount acceptingAthletes } }
  }
}"""


async def test_coaches_paginate_without_gaps_or_duplicates(
    gql: GraphQLClient, factory: Factory
) -> None:
    made = [await factory.coach(name=f"C{i}") for i in range(7)]
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        body = await gql(COACHES, {"first": 3, "after": after})
        conn = body["data"]["coaches"]
        assert conn["totalCount"] == 7
        seen += [e["node"]["name"] for e in conn["edges"]]
        pages += 1
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert seen == [c.name for c in made]
    assert pages == 3


async def test_coach_filters(gql: GraphQLClient, factory: Factory) -> None:
    full = await factory.coach(name="Full", capacity=1, city="Lyon")
    await factory.coach(name="Swim", sports=["swimming"], city="Lyon")
    await factory.coach(name="Run", city="Paris")
    athlete = await factory.athlete()
    await factory.assign(full.id, athlete.id)

    async def names(f: dict[str, object]) -> list[str]:
        body = await gql(COACHES, {"filter": f})
        return [e["node"]["name"] for e in body["data"]["coaches"]["edges"]]

    assert await names({"city": "Lyon"}) == ["Full", "Swim"]
    assert await names({"sport": "swimming"}) == ["Swim"]
    assert await names({"sport": "Running", "acceptingAthletes": True}) == ["Run"]
    assert await names({"acceptingAthletes": False}) == ["Full"]
    body = await gql(COACHES, {"filter": {"acceptingAthletes": False}})
    node = body["data"]["coaches"]["edges"][0]["node"]
    assert node["activeAthleteCount"] == 1 and node["acceptingAthletes"] is False


async def test_node_resolves_every_type(gql: GraphQLClient, factory: Factory) -> None:
    coach = await factory.coach()
    athlete = await factory.athlete()
    skill = await factory.skill()
    program = await factory.program(coach.id, [skill.id])
    await factory.assign(coach.id, athlete.id)
    session = await factory.session(coach.id, athlete.id, program_id=program.id)
    query = """query($id: ID!) { node(id: $id) { __typename id
      ... on Coach { name } ... on Athlete { name } ... on Skill { slug }
      ... on Program { title } ... on TrainingSession { status } } }"""
    admin = token_for("admin")
    for type_name, raw in [
        ("Coach", coach.id),
        ("Athlete", athlete.id),
        ("Skill", skill.id),
        ("Program", program.id),
        ("TrainingSession", session.id),
    ]:
        gid = to_global_id(type_name, raw)
        body = await gql(query, {"id": gid}, token=admin)
        assert body["data"]["node"]["__typename"] == type_name
        assert body["data"]["node"]["id"] == gid


async def test_node_missing_and_malformed(gql: GraphQLClient, factory: Factory) -> None:
    query = "query($id: ID!) { node(id: $id) { id } }"
    body = await gql(query, {"id": to_global_id("Coach", 999)})
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    body = await gql(query, {"id": "not-an-id"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_viewer(gql: GraphQLClient, factory: Factory) -> None:
    coach = await factory.coach(name="Me")
    query = "{ viewer { role coach { name } athlete { name } } }"
    assert (await gql(query))["data"]["viewer"] is None
    body = await gql(query, token=token_for("coach", coach.id))
    assert body["data"]["viewer"] == {"role": "COACH", "coach": {"name": "Me"}, "athlete": None}


async def test_nested_coach_dashboard(gql: GraphQLClient, factory: Factory) -> None:
    coach = await factory.coach(name="Head")
    base = await factory.skill(name="Base")
    advanced = await factory.skill(name="Advanced", prerequisites=[base.id])
    await factory.teach(coach.id, advanced.id, level=5)
    await factory.program(coach.id, [base.id, advanced.id], title="Block")
    kids = [await factory.athlete(name=f"K{i}") for i in range(3)]
    for kid in kids:
        await factory.assign(coach.id, kid.id)
        await factory.learn(kid.id, base.id, level=3)
    query = """{ coaches { edges { node {
        name skills { level skill { name prerequisites { name } } }
        programs { title skills { name unlocks { name } } coach { name } }
        athletes(first: 2) { totalCount pageInfo { hasNextPage }
          edges { node { name skills { level skill { name } } } } }
    } } } }"""
    body = await gql(query, token=token_for("coach", coach.id))
    assert "errors" not in body, body
    node = body["data"]["coaches"]["edges"][0]["node"]
    assert node["skills"] == [
        {"level": 5, "skill": {"name": "Advanced", "prerequisites": [{"name": "Base"}]}}
    ]
    assert node["programs"][0]["skills"][0] == {"name": "Base", "unlocks": [{"name": "Advanced"}]}
    athletes = node["athletes"]
    assert athletes["totalCount"] == 3 and athletes["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["name"] for e in athletes["edges"]] == ["K0", "K1"]
    assert athletes["edges"][0]["node"]["skills"] == [{"level": 3, "skill": {"name": "Base"}}]


async def test_skills_and_programs_lists(gql: GraphQLClient, factory: Factory) -> None:
    coach = await factory.coach()
    run = await factory.skill(sport="running")
    await factory.skill(sport="swimming")
    await factory.program(coach.id, [run.id], level=4, title="Hard")
    await factory.program(coach.id, [run.id], level=1, title="Easy")
    body = await gql('{ skills(sport: "swimming") { totalCount edges { node { sport } } } }')
    assert body["data"]["skills"]["totalCount"] == 1
    query = """query($f: ProgramFilter) { programs(filter: $f) { totalCount
        edges { node { title enrollmentCount coach { id } } } } }"""
    body = await gql(query, {"f": {"maxLevel": 2, "coachId": to_global_id("Coach", coach.id)}})
    assert [e["node"]["title"] for e in body["data"]["programs"]["edges"]] == ["Easy"]
    assert body["data"]["programs"]["totalCount"] == 1
