"""Browse without words (API.md, added 2026-11-30), on each search backend: a blank query
lists every document in the viewer's scope passing the filter, by name/title then id, with
totalCount and facets that count them all."""

from __future__ import annotations

from typing import Any

from coachgraph.ids import to_global_id
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory
from tests.search.test_search_contract import SEARCH


def _names(body: dict[str, Any]) -> list[str]:
    assert "errors" not in body, body
    edges = body["data"]["search"]["edges"]
    return [e["node"].get("name") or e["node"].get("title") for e in edges]


def _facets(body: dict[str, Any]) -> dict[str, dict[str, int]]:
    facets = body["data"]["search"]["facets"]
    return {f["field"]: {v["value"]: v["count"] for v in f["values"]} for f in facets}


async def test_blank_query_browses_filtered_with_facets(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    cities = ["Lisbon", "Lisbon", "Porto", "Lisbon", "Porto", "Lisbon"]
    for i, city in enumerate(cities):
        sports = ["running"] if i % 2 == 0 else ["swimming", "running"]
        await factory.coach(name=f"Coach {'FEDCBA'[i]}", sports=sports, city=city)
    await factory.coach(name="coach a twin", sports=["running"], city="lisbon")
    await factory.coach(name="Cyclist", sports=["cycling"], city="Lisbon")
    await project()
    admin = token_for("admin")
    variables = {"kinds": ["COACH"], "filter": {"sports": ["running"], "cities": ["lisbon"]}}
    for q in ("", "   ", "\t \n"):
        body = await sgql(SEARCH, {"q": q, "first": 50, **variables}, admin)
        # by title without case (byte order, as Meilisearch sorts), then id
        assert _names(body) == ["Coach A", "coach a twin", "Coach C", "Coach E", "Coach F"]
        result = body["data"]["search"]
        expected = await factory.db.pool.fetchval(
            "SELECT count(*) FROM coaches WHERE lower(city) = 'lisbon' AND 'running' = ANY(sports)"
        )
        assert result["totalCount"] == expected == 5
        assert all(e["score"] is None and e["highlight"] is None for e in result["edges"])
        facets = _facets(body)
        assert facets["sport"] == {"running": 5, "swimming": 3}
        assert sum(facets["city"].values()) == 5
    # no filter: every coach; a word still searches
    body = await sgql(SEARCH, {"q": " ", "kinds": ["COACH"], "first": 50}, admin)
    assert body["data"]["search"]["totalCount"] == 8
    assert _facets(body)["sport"]["cycling"] == 1
    body = await sgql(SEARCH, {"q": "cyclist", "kinds": ["COACH"]}, admin)
    assert _names(body) == ["Cyclist"]


async def test_browse_pages_in_order_without_gaps(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    made = [await factory.coach(name=f"Same Name {i % 3}") for i in range(11)]
    await project()
    expected = [
        to_global_id("Coach", c.id) for c in sorted(made, key=lambda c: (c.name.lower(), c.id))
    ]
    seen, after = [], None
    while True:
        body = await sgql(SEARCH, {"q": "", "kinds": ["COACH"], "first": 4, "after": after})
        page = body["data"]["search"]
        assert page["totalCount"] == 11
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == expected


async def test_browse_keeps_the_viewers_scope(
    sgql: GraphQLClient, factory: Factory, project: Any
) -> None:
    coach = await factory.coach(name="Browse Coach")
    looking = await factory.athlete(name="Looking", looking_for_coach=True)
    pupil = await factory.athlete(name="Pupil")
    await factory.athlete(name="Private")
    await factory.assign(coach.id, pupil.id)
    await project()
    athletes = {"kinds": ["ATHLETE"], "first": 20}
    as_admin = _names(await sgql(SEARCH, {"q": "", **athletes}, token_for("admin")))
    assert as_admin == ["Looking", "Private", "Pupil"]
    body = await sgql(SEARCH, {"q": "", **athletes}, token_for("coach", coach.id))
    assert _names(body) == ["Looking", "Pupil"] and body["data"]["search"]["totalCount"] == 2
    assert _facets(body)["level"] and sum(_facets(body)["level"].values()) == 2
    anonymous = await sgql(SEARCH, {"q": "", **athletes})
    assert _names(anonymous) == [] and anonymous["data"]["search"]["totalCount"] == 0
    # an athlete browsing coaches sees them by name, not re-ranked by its goals
    for i in range(3):
        await factory.coach(name=f"Browse Coach {3 - i}")
    await project()
    body = await sgql(SEARCH, {"q": "", "kinds": ["COACH"]}, token_for("athlete", looking.id))
    assert _names(body) == ["Browse Coach", "Browse Coach 1", "Browse Coach 2", "Browse Coach 3"]
