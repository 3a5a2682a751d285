"""The search contract, through GraphQL, on each backend: typos, prefixes, accents, filters,
facets, pagination, policy, personal ranking, the projection, and hostile input."""

from __future__ import annotations

from typing import Any

import pytest

from coachgraph.ids import to_global_id
from coachgraph.search.model import Filters, Scope, SearchQuery
from coachgraph.stores import athletes, outbox
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory
from tests.search.conftest import Backend

SEARCH = """query($q: String!, $kinds: [SearchKind!], $filter: SearchFilter, $first: Int, $after: String) {
  search(query: $q, kinds: $kinds, filter: $filter, first: $first, after: $after) {
    totalCount facetsExact pageInfo { hasNextPage endCursor }
    facets { field values { value count } }
    edges { cursor score highlight node { __typename
      ... on Coach { id name } ... on Athlete { id name } ... on Program { id title } ... on Skill { id name } } } } }"""


async def names(
    sgql: GraphQLClient, q: str, token: str | None = None, **variables: Any
) -> list[str]:
    body = await sgql(SEARCH, {"q": q, **variables}, token)
    assert "errors" not in body, body
    return [
        e["node"].get("name") or e["node"].get("title") for e in body["data"]["search"]["edges"]
    ]


async def ids(sgql: GraphQLClient, q: str, token: str | None = None, **variables: Any) -> set[str]:
    """The global IDs of the first page of matches."""
    body = await sgql(SEARCH, {"q": q, **variables}, token)
    assert "errors" not in body, body
    return {e["node"]["id"] for e in body["data"]["search"]["edges"]}


async def indexed(backend: Backend, text: str, kinds: list[str]) -> int:
    """How many documents of these kinds the backend's index itself matches (no policy, no
    load from the records: what the projection holds)."""
    index = backend.resources.search
    prepared = await index.prepare(SearchQuery(text, Scope(kinds), Filters(), 8))
    assert prepared is not None
    return await index.count(prepared)


async def test_typos_prefixes_and_accents(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    await factory.coach(name="John Smith", sports=["running"])
    await factory.coach(name="José Álvarez", sports=["swimming"], city="Sevilla")
    await factory.coach(name="Jane Doe", sports=["cycling"])
    await project()
    assert (await names(sgql, "jonh smtih"))[0] == "John Smith"
    await factory.coach(name="Rowing Rita", sports=["rowing"])
    await factory.coach(name="Running Rick", sports=["running"])
    await project()
    # the closest correction only: one edit to "running", not also two to "rowing"
    assert await names(sgql, "runing rick") == ["Running Rick"]
    found = await names(sgql, "runing", kinds=["COACH"], first=20)
    assert sorted(found) == ["John Smith", "Running Rick"]  # both run; Rowing Rita does not
    assert (await names(sgql, "swi")) == ["José Álvarez"]
    assert (await names(sgql, "jose")) == ["José Álvarez"]
    assert (await names(sgql, "ALVAREZ sevilla")) == ["José Álvarez"]
    assert await names(sgql, "zzzzqqq") == []
    assert await names(sgql, "jo") != [] and await names(sgql, "j") == []  # one letter: no prefix


async def test_filters_and_facets_match_sql(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    for i in range(12):
        await factory.coach(
            name=f"Coach Runner {i}",
            sports=["running" if i % 3 else "trail"],
            city=["Paris", "Lyon"][i % 2],
        )
    for level in (1, 2, 3, 4):
        await factory.athlete(
            name=f"Runner Athlete {level}", level=level, looking_for_coach=True, city="Paris"
        )
    await project()
    admin = token_for("admin")
    body = await sgql(
        SEARCH,
        {"q": "runner", "filter": {"cities": ["paris"], "sports": ["Running"]}, "first": 100},
        admin,
    )
    result = body["data"]["search"]
    expected = await factory.db.pool.fetchval(
        "SELECT (SELECT count(*) FROM coaches WHERE city = 'Paris' AND 'running' = ANY(sports))"
        " + (SELECT count(*) FROM athletes WHERE city = 'Paris' AND sport = 'running')"
    )
    assert result["totalCount"] == expected == len(result["edges"])
    assert result["facetsExact"] is True
    facets = {f["field"]: {v["value"]: v["count"] for v in f["values"]} for f in result["facets"]}
    assert facets["city"] == {"Paris": expected}
    assert facets["sport"] == {"running": expected}
    assert facets["level"] == {str(lv): 1 for lv in (1, 2, 3, 4)}
    body = await sgql(
        SEARCH,
        {"q": "runner", "kinds": ["ATHLETE"], "filter": {"minLevel": 2, "maxLevel": 3}},
        admin,
    )
    assert sorted(e["node"]["name"] for e in body["data"]["search"]["edges"]) == [
        "Runner Athlete 2",
        "Runner Athlete 3",
    ]


async def test_pagination_has_no_duplicates_or_gaps(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    for i in range(25):
        await factory.coach(name=f"Tempo Coach {i:02d}")
    await project()
    seen, after = [], None
    while True:
        body = await sgql(SEARCH, {"q": "tempo", "first": 7, "after": after})
        page = body["data"]["search"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 25


async def test_policy_per_role(sgql: GraphQLClient, factory: Factory, project: Any) -> None:
    coach = await factory.coach(name="Marathon Coach")
    looking = await factory.athlete(name="Marathon Seeker", looking_for_coach=True)
    own = await factory.athlete(name="Marathon Pupil")
    hidden = await factory.athlete(name="Marathon Private")
    await factory.assign(coach.id, own.id)
    await project()
    assert await names(sgql, "marathon") == ["Marathon Coach"]
    assert await names(sgql, "marathon", token_for("athlete", looking.id)) == ["Marathon Coach"]
    as_coach = await names(sgql, "marathon", token_for("coach", coach.id), first=20)
    assert sorted(as_coach) == ["Marathon Coach", "Marathon Pupil", "Marathon Seeker"]
    as_admin = await names(sgql, "marathon", token_for("admin"), first=20)
    assert sorted(as_admin) == [
        "Marathon Coach",
        "Marathon Private",
        "Marathon Pupil",
        "Marathon Seeker",
    ]
    body = await sgql(SEARCH, {"q": "marathon", "kinds": ["ATHLETE"]}, None)
    assert body["data"]["search"]["edges"] == [] and body["data"]["search"]["totalCount"] == 0
    # by identity, not by name: the athlete neither looking nor coached is the admin's alone
    athletes_for = {
        "admin": {to_global_id("Athlete", a.id) for a in (looking, own, hidden)},
        "coach": {to_global_id("Athlete", a.id) for a in (looking, own)},
    }
    for role, raw_id in (("admin", None), ("coach", coach.id)):
        found = await ids(sgql, "marathon", token_for(role, raw_id), kinds=["ATHLETE"], first=20)
        assert found == athletes_for[role], role


async def test_projection_follows_renames_and_deletions(
    sgql: GraphQLClient, factory: Factory, project: Any, search_backend: Backend
) -> None:
    coach = await factory.coach(name="Oldname Trainer")
    await project()
    assert await names(sgql, "oldname") == ["Oldname Trainer"]
    body = await sgql(
        'mutation($id: ID!) { updateCoach(id: $id, input: {name: "Newname Trainer"}) { __typename } }',
        {"id": to_global_id("Coach", coach.id)},
        token_for("admin"),
    )
    assert body["data"]["updateCoach"]["__typename"] == "Coach"
    # not applied yet (a projection): the old words still find it, shown as it is now
    assert await names(sgql, "oldname") == ["Newname Trainer"]
    assert await names(sgql, "newname") == []
    await project()
    assert await names(sgql, "newname") == ["Newname Trainer"]
    assert await names(sgql, "oldname") == []
    async with factory.db.transaction() as conn:
        await conn.execute("DELETE FROM coaches WHERE id = $1", coach.id)
        await outbox.append(
            conn, aggregate="coach", aggregate_id=coach.id, event="coach.deleted", payload={}
        )
    # the answer drops a match whose record is gone even before the projection has it; the
    # index itself still holds the document until the event is applied
    assert await names(sgql, "newname") == []
    assert await indexed(search_backend, "newname", ["COACH"]) == 1
    await project()
    assert await indexed(search_backend, "newname", ["COACH"]) == 0
    body = await sgql(SEARCH, {"q": "newname"}, token_for("admin"))
    assert body["data"]["search"]["totalCount"] == 0 and body["data"]["search"]["edges"] == []


@pytest.mark.parametrize(
    "q",
    [
        "!!!???...",
        "'; DROP TABLE coaches; --",
        "a & b | !c :* <-> (",
        'foo" OR 1=1 --',
        "\\x00\\\\",
        "   ",
        "ü" * 150,
    ],
)
async def test_hostile_queries_give_results_or_typed_errors(
    sgql: GraphQLClient, factory: Factory, project: Any, q: str
) -> None:
    await factory.coach(name="Robust Coach")
    await project()
    body = await sgql(SEARCH, {"q": q, "filter": {"cities": ["'); DELETE FROM coaches; --"]}})
    assert "errors" not in body, body
    assert await factory.count("coaches") == 1


async def test_too_long_and_bad_filters_are_typed_errors(
    sgql: GraphQLClient, factory: Factory
) -> None:
    body = await sgql(SEARCH, {"q": "x" * 201})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await sgql(SEARCH, {"q": "x", "filter": {"minLevel": 9}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await sgql(SEARCH, {"q": "x", "filter": {"skillIds": ["nope"]}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_reindex_rebuilds_every_document(
    sgql: GraphQLClient, factory: Factory, search_backend: Backend
) -> None:
    from coachgraph.services import reindex_search

    coach = await factory.coach(name="Reindexed Coach")
    await factory.athlete(name="Reindexed Athlete")
    skill = await factory.skill(name="Reindexed Skill")
    await factory.program(coach.id, [skill.id], title="Reindexed Program")
    admin = token_for("admin")
    assert await names(sgql, "reindexed", admin) == []  # not projected yet
    said = await reindex_search(search_backend.settings)
    assert "4 documents" in said and search_backend.name in said, said
    found = await names(sgql, "reindexed", admin, first=10)
    assert sorted(found) == [
        "Reindexed Athlete",
        "Reindexed Coach",
        "Reindexed Program",
        "Reindexed Skill",
    ]


async def test_athletes_get_personal_ranking_by_goal_fit(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    goal, other = await factory.skill(name="Hill Repeats"), await factory.skill()
    plain = await factory.coach(name="Tempo Plain", headline="tempo tempo tempo")
    fit = await factory.coach(name="Tempo Fit")
    await factory.teach(fit.id, goal.id)
    await factory.teach(plain.id, other.id)
    program = await factory.program(plain.id, [goal.id], title="Tempo Block")
    athlete = await factory.athlete(name="Goal Setter")
    idle = await factory.athlete(name="No Goals")
    async with factory.db.transaction() as conn:
        await athletes.set_goals(conn, athlete_id=athlete.id, skill_ids=[goal.id])
    await project()
    anonymous = await names(sgql, "tempo", kinds=["COACH"])
    assert anonymous[0] == "Tempo Plain"  # the better text match, for anyone else
    assert await names(sgql, "tempo", token_for("athlete", idle.id), kinds=["COACH"]) == anonymous
    mine = await names(sgql, "tempo", token_for("athlete", athlete.id), kinds=["COACH"])
    assert mine == ["Tempo Fit", "Tempo Plain"]  # teaches the athlete's goal
    body = await sgql(SEARCH, {"q": "tempo"}, token_for("athlete", athlete.id))
    nodes = [e["node"] for e in body["data"]["search"]["edges"]]
    everything = [n.get("name") or n.get("title") for n in nodes]
    assert everything.index("Tempo Block") < everything.index("Tempo Plain")
    # the program ranked up is the one developing the goal, by identity
    assert nodes[everything.index("Tempo Block")]["id"] == to_global_id("Program", program.id)
    body = await sgql(SEARCH, {"q": "tempo", "kinds": ["COACH"]}, token_for("athlete", athlete.id))
    scores = [e["score"] for e in body["data"]["search"]["edges"]]
    assert scores == sorted(scores, reverse=True) and scores[0] <= 1.0


async def test_personal_ranking_pages_have_no_duplicates_or_gaps(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    goal = await factory.skill()
    athlete = await factory.athlete()
    async with factory.db.transaction() as conn:
        await athletes.set_goals(conn, athlete_id=athlete.id, skill_ids=[goal.id])
    for i in range(60):  # more than the re-ranked window (50): pages cross its edge
        coach = await factory.coach(name=f"Sprint Coach {i:02d}")
        if i % 4 == 0:
            await factory.teach(coach.id, goal.id)
    await project()
    token = token_for("athlete", athlete.id)
    seen, after = [], None
    while True:
        body = await sgql(SEARCH, {"q": "sprint", "first": 9, "after": after}, token)
        page = body["data"]["search"]
        seen += [e["node"]["name"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 60
    # within the window (equal text scores: the first 50 by id), those teaching the goal
    # come first; beyond it the text order stands
    numbers = [int(n[-2:]) for n in seen]
    assert numbers[:13] == list(range(0, 50, 4))
    assert numbers[50:] == list(range(50, 60))


async def test_postgres_facets_say_when_they_stopped_counting(
    factory: Factory, search_backend: Backend, project: Any
) -> None:
    from coachgraph.search.model import Filters, Scope, SearchQuery
    from coachgraph.search.postgres import PostgresSearch

    if search_backend.name != "postgres":
        pytest.skip("the facet limit is the Postgres backend's (Meilisearch counts every match)")
    for i in range(5):
        await factory.coach(name=f"Facet Coach {i}", city="Oslo")
    await project()
    query = SearchQuery("facet", Scope(["COACH"]), Filters(), 8)
    for limit, exact, counted in ((10, True, 5), (3, False, 3)):
        search = PostgresSearch(factory.db, facet_limit=limit)
        prepared = await search.prepare(query)
        assert prepared is not None
        facets = await search.facets(prepared)
        assert facets.exact is exact and facets.values["city"] == [("Oslo", counted)]
        assert await search.count(prepared) == 5  # the count is always exact


async def test_round_trips_stay_flat_as_results_grow(
    sgql: GraphQLClient, factory: Factory, project: Any, search_backend: Backend
) -> None:
    async def statements(n: int) -> int:
        for i in range(n):
            coach = await factory.coach(name=f"Flat{n} Coach {i}")
            await factory.program(coach.id, [], title=f"Flat{n} Program {i}")
            await factory.athlete(name=f"Flat{n} Athlete {i}", looking_for_coach=True)
        await project()
        body, count = await sgql.statements(
            SEARCH, {"q": f"flat{n}", "first": 3 * n}, token_for("admin")
        )
        assert len(body["data"]["search"]["edges"]) == 3 * n, body
        return count

    small, large = await statements(2), await statements(12)
    # Postgres: words, page, count, facets, one load per kind of node (three kinds), and
    # once, the values of facet keys not seen before; Meilisearch: the three loads
    assert large <= small <= (8 if search_backend.name == "postgres" else 3), (small, large)
