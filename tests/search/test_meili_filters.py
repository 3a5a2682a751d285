"""The Meilisearch backend's pure parts, which need no server: documents and filters built
from typed values, so no input reaches the filter syntax."""

from __future__ import annotations

import re

import pytest

from coachgraph.resolvers import policy
from coachgraph.resolvers.policy import Role, Viewer
from coachgraph.search.meili import (
    athlete_filter,
    document,
    filter_expression,
    index_settings,
    key,
)
from coachgraph.search.model import Filters, Scope
from coachgraph.stores.records import AthleteScope

SAFE = re.compile(r'^[\w\s\[\],"=<>!.-]*$')


def test_filters_carry_only_keys_and_numbers() -> None:
    hostile = ['"] OR kind = ATHLETE OR city_key IN ["', "Paris\\", "'; --"]
    clauses = filter_expression(
        Scope(["COACH", "ATHLETE"], AthleteScope(looking_for_coach=True, coach_id=7)),
        Filters(sports=hostile, cities=hostile, min_level=2, max_level=4, skill_ids=[3, 5]),
    )
    flat = [c for clause in clauses for c in (clause if isinstance(clause, list) else [clause])]
    for clause in flat:
        assert SAFE.match(clause), clause
        assert "ATHLETE OR" not in clause
    assert flat[0] == "kind IN [COACH, ATHLETE]"
    assert flat[1:4] == ["kind != ATHLETE", "looking_for_coach = true", "coach_ids = 7"]
    assert "level >= 2" in flat and "level <= 4" in flat and "skill_ids IN [3, 5]" in flat


def test_scopes_and_empty_lists() -> None:
    assert filter_expression(Scope(["COACH"]), Filters()) == ["kind IN [COACH]"]
    anonymous = filter_expression(Scope(["ATHLETE"]), Filters())
    assert anonymous == ["kind IN [ATHLETE]", "kind != ATHLETE"]
    admin = filter_expression(Scope(["ATHLETE"], AthleteScope(everyone=True)), Filters(cities=[]))
    assert admin == ["kind IN [ATHLETE]", "kind = NONE"]  # no city matches nothing


def test_documents_key_sports_and_cities_without_case_or_accents() -> None:
    row = {
        "kind": "COACH",
        "id": 4,
        "title": "José",
        "body": None,
        "sports": ["running"],
        "city": "Málaga",
        "level": None,
        "skill_ids": [1],
        "looking_for_coach": False,
        "coach_ids": [],
    }
    doc = document(row)
    assert doc["uid"] == "COACH-4" and doc["body"] == ""
    assert doc["city_key"] == key("malaga") == key(" MALAGA ") != key("malage")
    assert doc["sport_keys"] == [key("Running")]


def test_index_settings_tolerate_typos_from_four_letters() -> None:
    settings = index_settings(100_000, max_facet_values=100)
    assert settings.searchable_attributes == ["title", "body"]
    typos = settings.typo_tolerance
    assert typos is not None and typos.min_word_size_for_typos is not None
    assert typos.min_word_size_for_typos.one_typo == 4  # "jonh" finds "john"
    assert settings.pagination is not None and settings.pagination.max_total_hits == 100_000
    assert settings.faceting is not None and settings.faceting.max_values_per_facet == 100


@pytest.mark.parametrize(
    ("scope", "clause"),
    [
        (AthleteScope(everyone=True), None),
        (AthleteScope(), "kind != ATHLETE"),
        (AthleteScope(athlete_id=3), ["kind != ATHLETE", "id = 3"]),
        (
            AthleteScope(looking_for_coach=True, coach_id=7),
            ["kind != ATHLETE", "looking_for_coach = true", "coach_ids = 7"],
        ),
    ],
)
def test_meili_athlete_filter_is_derived_from_the_scope(
    scope: AthleteScope, clause: str | list[str] | None
) -> None:
    assert athlete_filter(scope) == clause


def test_search_filters_follow_the_viewer_scope() -> None:
    """The filter a viewer's search carries is the one its athlete scope renders; athletes
    and anonymous viewers search no athletes at all."""

    def athletes_filter(viewer: Viewer) -> list[str | list[str]]:
        return filter_expression(policy.search_scope(viewer, ["ATHLETE"]), Filters())

    assert athletes_filter(Viewer(Role.ADMIN)) == ["kind IN [ATHLETE]"]
    assert athletes_filter(Viewer(Role.COACH, coach_id=7)) == [
        "kind IN [ATHLETE]",
        ["kind != ATHLETE", "looking_for_coach = true", "coach_ids = 7"],
    ]
    for viewer in (Viewer(Role.ATHLETE, athlete_id=3), policy.ANONYMOUS):
        assert policy.search_scope(viewer, ["ATHLETE"]).kinds == []
        assert policy.search_scope(viewer, None).kinds == ["COACH", "PROGRAM", "SKILL"]
    assert "id" in (index_settings(10, max_facet_values=10).filterable_attributes or [])


async def test_blank_text_is_a_placeholder_search_sorted_like_postgres() -> None:
    from coachgraph.search.meili import BROWSE_SORT, MeiliPrepared, MeiliSearch
    from coachgraph.search.model import SearchQuery
    from coachgraph.stores.search_query import BROWSE_ORDER

    meili = MeiliSearch(None, "http://unused")  # type: ignore[arg-type]  # prepare reads neither
    scope, filters = Scope(["COACH"]), Filters(cities=["Lisbon"])
    for text in ("", "  \t"):
        prepared = await meili.prepare(SearchQuery(text, scope, filters, 8))
        assert prepared == MeiliPrepared("", filter_expression(scope, filters))
    assert await meili.prepare(SearchQuery("!!!", scope, filters, 8)) is None
    # Meilisearch sorts strings by their bytes, upper case as lower: lower(title) COLLATE "C"
    assert [s.split(":")[0] for s in BROWSE_SORT] == ["title", "kind", "id"]
    assert BROWSE_ORDER.startswith('lower(d.title) COLLATE "C"')
    assert {"title", "kind", "id"} <= set(
        index_settings(10, max_facet_values=5).sortable_attributes or []
    )
