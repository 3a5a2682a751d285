"""Bad input gets a typed error or BAD_USER_INPUT and changes nothing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from strawberry.types import ExecutionResult

from coachgraph.config import Limits
from coachgraph.ids import to_global_id as gid
from coachgraph.schema.schema import build_schema
from coachgraph.stores import sessions
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


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def post(gql: GraphQLClient, query: str, variables: dict[str, Any] | None = None) -> Any:
    """The response as sent: variables JSON-escaped (lone surrogates travel as "\ud800")."""
    response = await gql.client.post(
        "/graphql",
        content=json.dumps({"query": query, "variables": variables or {}}),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token_for('admin')}",
        },
    )
    assert response.status_code < 500, response.text
    return response.json()


def codes(body: Any) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or ()]


PAGED = [
    '{ coaches(after: "%s") { totalCount } }',
    '{ athletes(after: "%s") { totalCount } }',
    '{ skills(after: "%s") { totalCount } }',
    '{ programs(after: "%s") { totalCount } }',
    '{ search(query: "coach", after: "%s") { totalCount edges { cursor } } }',
    '{ search(query: "", after: "%s") { totalCount edges { cursor } } }',
    '{ node(id: "Q29hY2g6MQ") { ... on Coach { athletes(after: "%s") { totalCount } } } }',
    '{ node(id: "Q29hY2g6MQ") { ... on Coach { sessions(after: "%s") { totalCount } } } }',
    '{ node(id: "QXRobGV0ZTox") { ... on Athlete { sessions(after: "%s") { totalCount } } } }',
    '{ node(id: "VHJhaW5pbmdTZXNzaW9uOjE") { ... on TrainingSession { samples(after: "%s") { edges { cursor } } } } }',
]


@pytest.mark.parametrize(
    "query",
    PAGED,
    ids=[
        "coaches",
        "athletes",
        "skills",
        "programs",
        "search",
        "browse",
        "Coach.athletes",
        "Coach.sessions",
        "Athlete.sessions",
        "samples",
    ],
)
@pytest.mark.parametrize("position", [2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 10**30, 10**60])
async def test_cursors_past_32_and_64_bits(
    gql: GraphQLClient, factory: Factory, query: str, position: int
) -> None:
    """Every cursor names a bigint position (a search cursor: an offset up to
    Limits.max_search_offset); any further is malformed, never a store's overflow."""
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    await factory.session(coach.id, athlete.id)
    body = await post(gql, query % cursor(f"c:{position}"))
    limit = Limits().max_search_offset if "search" in query else 2**63 - 1
    if position > limit:
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["message"] == "Malformed cursor"
    else:
        assert "errors" not in body, body


@pytest.mark.parametrize(
    "text", ["c:1 ", "c:+1", "c:-1", "c:\u0661", "c:1\x00", "c:" + "9" * 80, "d:1"]
)
async def test_cursors_not_ours(gql: GraphQLClient, text: str) -> None:
    body = await post(gql, '{ coaches(after: "%s") { totalCount } }' % cursor(text))
    assert codes(body) == ["BAD_USER_INPUT"], body


# (document, variables, the argument the error names); every string input, as a literal
# (NUL can be written as a \u escape; GraphQL's lexer refuses a lone surrogate itself) or a
# variable (JSON carries both)
UNSTORABLE = [
    ('{ coaches(filter: {sport: "run\\u0000"}) { totalCount } }', None, "filter.sport"),
    ('{ coaches(filter: {city: "\\u0000"}) { totalCount } }', None, "filter.city"),
    ('{ athletes(filter: {city: "P\\u{0}ris"}) { totalCount } }', None, "filter.city"),
    ('{ skills(sport: "\\u0000") { totalCount } }', None, "sport"),
    ('{ skills(sport: "raw \x00 NUL") { totalCount } }', None, "sport"),
    ('{ skills(sport: """block \x00""") { totalCount } }', None, "sport"),
    ('{ programs(filter: {sport: "\\u0000"}) { totalCount } }', None, "filter.sport"),
    ('{ search(query: "run\\u0000") { totalCount } }', None, "query"),
    (
        '{ search(query: "run", filter: {cities: ["x", "\\u0000"]}) { totalCount } }',
        None,
        "filter.cities",
    ),
    ('{ node(id: "Q29hY2g6MQ\\u0000") { id } }', None, "id"),
    ('query($s: String = "\\u0000") { skills(sport: $s) { totalCount } }', None, "$s"),
    (
        "query($f: CoachFilter) { coaches(filter: $f) { totalCount } }",
        {"f": {"sport": "\ud800"}},
        "$f.sport",
    ),
    (
        "query($f: CoachFilter) { coaches(filter: $f) { totalCount } }",
        {"f": {"city": "a\x00"}},
        "$f.city",
    ),
    (
        "query($f: AthleteFilter) { athletes(filter: $f) { totalCount } }",
        {"f": {"sport": "\udfff"}},
        "$f.sport",
    ),
    ("query($s: String) { skills(sport: $s) { totalCount } }", {"s": "\ud83d"}, "$s"),
    ("query($q: String!) { search(query: $q) { totalCount } }", {"q": "run \ud800"}, "$q"),
    (
        'query($f: SearchFilter) { search(query: "", filter: $f) { totalCount } }',
        {"f": {"sports": ["run", "\ud800"]}},
        "$f.sports[1]",
    ),
    ("query($a: String) { coaches(after: $a) { totalCount } }", {"a": "\ud800"}, "$a"),
    ("query($id: ID!) { node(id: $id) { id } }", {"id": "Q29hY2g6MQ\ud800"}, "$id"),
    (
        "mutation($i: CreateCoachInput!) { createCoach(input: $i) { __typename } }",
        {"i": {"name": "N\ud800", "sports": ["run"], "timezone": "UTC", "capacity": 1}},
        "$i.name",
    ),
    (
        "mutation($i: CreateCoachInput!) { createCoach(input: $i) { __typename } }",
        {"i": {"name": "N", "sports": ["run", "\x00"], "timezone": "UTC", "capacity": 1}},
        "$i.sports[1]",
    ),
    (
        'mutation { createAthlete(input: {name: "a\\u0000b", sport: "run", timezone: "UTC", level: 1}) { __typename } }',
        None,
        "input.name",
    ),
    (
        'mutation { createSkill(input: {slug: "s", name: "S", sport: "\\u0000"}) { __typename } }',
        None,
        "input.sport",
    ),
]


@pytest.mark.parametrize(("query", "variables", "argument"), UNSTORABLE)
async def test_text_no_store_can_hold_is_refused_naming_the_argument(
    gql: GraphQLClient,
    factory: Factory,
    query: str,
    variables: dict[str, Any] | None,
    argument: str,
) -> None:
    """NUL (PostgreSQL text refuses it) and lone surrogates (not Unicode text: nothing
    encodes them) in any string input: BAD_USER_INPUT naming where, before anything runs."""
    await factory.coach()
    before = await factory.snapshot()
    body = await post(gql, query, variables)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["data"] is None
    assert f'"{argument}"' in body["errors"][0]["message"], body
    assert body["errors"][0]["extensions"]["argument"] == argument
    assert await factory.snapshot() == before


async def test_text_that_is_fine_passes(gql: GraphQLClient, factory: Factory) -> None:
    """Astral characters (a valid surrogate pair in JSON), escapes and tabs are text."""
    await factory.coach(city="Zürich 🏃")
    body = await post(
        gql,
        'query($c: String) { a: coaches(filter: {city: $c}) { totalCount } b: coaches(filter: {city: "Z\\u00fcrich \\ud83c\\udfc3"}) { totalCount } }',
        {"c": "Zürich 🏃"},
    )
    assert body == {"data": {"a": {"totalCount": 1}, "b": {"totalCount": 1}}}


# ---------------------------------------------------------------------------- DateTime
OUT_OF_RANGE = [
    "0001-01-01T00:00:00+05:00",  # before year 1 in UTC: Python cannot even convert it
    "9999-12-31T23:59:59-05:00",  # year 10000 in UTC
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59.999999+00:00",
    "1899-12-31T23:59:59+00:00",
    "1900-01-01T04:59:59+05:00",
    "2200-01-01T00:00:00+00:00",
    "2199-12-31T23:00:00-01:00",
]


@pytest.mark.parametrize("as_variable", [False, True])
@pytest.mark.parametrize("at", OUT_OF_RANGE)
async def test_schedule_session_at_the_ends_of_time(
    gql: GraphQLClient, factory: Factory, at: str, as_variable: bool
) -> None:
    """DateTime takes instants from 1900 up to 2200 (UTC); others are BAD_USER_INPUT."""
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    before = await factory.snapshot()
    fields = f'coachId: "{gid("Coach", coach.id)}", athleteId: "{gid("Athlete", athlete.id)}"'
    if as_variable:
        body = await post(
            gql,
            f"mutation($at: DateTime!) {{ scheduleSession(input: {{{fields}, scheduledAt: $at}}) {{ __typename }} }}",
            {"at": at},
        )
    else:
        body = await post(
            gql,
            f'mutation {{ scheduleSession(input: {{{fields}, scheduledAt: "{at}"}}) {{ __typename }} }}',
        )
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert "1900" in body["errors"][0]["message"], body
    assert await factory.snapshot() == before


@pytest.mark.parametrize("at", ["1900-01-01T00:00:00+00:00", "2199-12-31T23:59:59+00:00"])
async def test_datetime_range_is_inclusive_of_its_ends(
    gql: GraphQLClient, factory: Factory, at: str
) -> None:
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    body = await post(
        gql,
        'mutation($at: DateTime!) { scheduleSession(input: {coachId: "%s", athleteId: "%s", scheduledAt: $at}) { __typename } }'
        % (gid("Coach", coach.id), gid("Athlete", athlete.id)),
        {"at": at},
    )
    assert "errors" not in body, body


@pytest.mark.parametrize("at", OUT_OF_RANGE[:2])
async def test_samples_at_the_ends_of_time(gql: GraphQLClient, factory: Factory, at: str) -> None:
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    scheduled = await factory.session(coach.id, athlete.id)
    async with factory.db.transaction() as conn:
        live = await sessions.transition(conn, session_id=scheduled.id, to="LIVE")
    fine = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    body = await post(
        gql,
        "mutation($id: ID!, $s: [MetricSampleInput!]!) { recordMetrics(sessionId: $id, samples: $s) { __typename } }",
        {
            "id": gid("TrainingSession", live.id),
            "s": [{"kind": "HEART_RATE", "at": t, "value": 60} for t in (fine, at)],
        },
    )
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert await factory.count("metric_samples") == 0


async def test_subscriptions_refuse_unstorable_text_too() -> None:
    """The check sits where graphql-core builds every operation: subscriptions included."""
    schema = build_schema()
    stream = await schema.subscribe(
        "subscription($id: ID!) { sessionUpdates(sessionId: $id) { id } }",
        variable_values={"id": "VHJhaW5pbmdTZXNzaW9uOjE\ud800"},
    )
    assert not isinstance(stream, ExecutionResult)
    result = await anext(stream)
    await stream.aclose()
    assert result.errors is not None
    (error,) = result.errors
    assert error.extensions == {"code": "BAD_USER_INPUT", "argument": "$id"}
