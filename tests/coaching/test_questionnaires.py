"""Questionnaires and session feedback: each question kind and its bounds, unknown keys,
versions (an edit never invalidates an old answer), the read rule of the session, and one
athlete's answers to one question over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coachgraph.ids import to_global_id
from coachgraph.stores.records import SessionRecord
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

ERRORS = "... on UserError { __typename message } ... on ValidationError { field code }"

CREATE = f"""mutation($input: CreateQuestionnaireInput!) {{ createQuestionnaire(input: $input) {{
  __typename ... on Questionnaire {{ id title version latestVersion coach {{ name }}
    questions {{ key label kind min max choices required }} }} {ERRORS} }} }}"""

REVISE = f"""mutation($id: ID!, $input: ReviseQuestionnaireInput!) {{
  reviseQuestionnaire(id: $id, input: $input) {{
    __typename ... on Questionnaire {{ id version latestVersion questions {{ key max }} }} {ERRORS} }} }}"""

SUBMIT = f"""mutation($s: ID!, $q: ID!, $a: JSON!) {{
  submitFeedback(sessionId: $s, questionnaireId: $q, answers: $a) {{
    __typename ... on Feedback {{ answers submittedAt questionnaire {{ version }} }} {ERRORS} }} }}"""

FEEDBACK = """query($id: ID!) { node(id: $id) { ... on TrainingSession { feedback {
  answers questionnaire { id version title questions { key kind min max } } } } } }"""

OVER_TIME = """query($a: ID!, $q: ID!, $key: String!, $last: Int) {
  feedbackAnswers(athleteId: $a, questionnaireId: $q, key: $key, last: $last) {
    value version submittedAt session { id } } }"""

QUESTIONS: list[dict[str, Any]] = [
    {"key": "effort", "label": "How hard was it?", "kind": "SCALE", "min": 1, "max": 10},
    {"key": "sleep_hours", "label": "Hours slept", "kind": "NUMBER", "min": 0, "max": 24},
    {"key": "notes", "label": "Anything else?", "kind": "TEXT", "max": 50, "required": False},
    {"key": "mood", "label": "Mood", "kind": "CHOICE", "choices": ["good", "ok", "bad"]},
]
GOOD = {"effort": 7, "sleep_hours": 7.5, "notes": "legs heavy", "mood": "ok"}


class Setup:
    def __init__(self, gql: GraphQLClient, factory: Factory) -> None:
        self.gql, self.factory = gql, factory

    async def build(self) -> Setup:
        f = self.factory
        self.coach, self.other_coach = await f.coach(name="Quinn"), await f.coach()
        self.athlete, self.other_athlete = await f.athlete(), await f.athlete()
        await f.assign(self.coach.id, self.athlete.id)
        await f.assign(self.other_coach.id, self.other_athlete.id)
        body = await self.create(QUESTIONS)
        assert body["__typename"] == "Questionnaire", body
        self.questionnaire = body["id"]
        return self

    async def create(self, questions: list[dict[str, Any]], token: str | None = None) -> Any:
        variables = {
            "input": {
                "coachId": to_global_id("Coach", self.coach.id),
                "title": "After the session",
                "questions": questions,
            }
        }
        body = await self.gql(CREATE, variables, token or token_for("coach", self.coach.id))
        assert "errors" not in body, body
        return body["data"]["createQuestionnaire"]

    async def session(self, *, status: str = "COMPLETED", days_ago: int = 1) -> SessionRecord:
        when = datetime.now(UTC) - timedelta(days=days_ago)
        return await self.factory.session_at(
            self.coach.id, self.athlete.id, scheduled_at=when, status=status
        )

    async def submit(
        self, session: SessionRecord, answers: Any, token: str | None = None, q: str | None = None
    ) -> Any:
        variables = {
            "s": to_global_id("TrainingSession", session.id),
            "q": q or self.questionnaire,
            "a": answers,
        }
        body = await self.gql(SUBMIT, variables, token or token_for("athlete", self.athlete.id))
        assert "errors" not in body, body
        return body["data"]["submitFeedback"]


@pytest.fixture
async def setup(gql: GraphQLClient, factory: Factory) -> Setup:
    return await Setup(gql, factory).build()


async def test_a_coach_defines_each_kind(setup: Setup) -> None:
    made = await setup.create(QUESTIONS)
    assert made["version"] == made["latestVersion"] == 1 and made["coach"]["name"] == "Quinn"
    assert [q["kind"] for q in made["questions"]] == ["SCALE", "NUMBER", "TEXT", "CHOICE"]
    assert made["questions"][2] == {
        "key": "notes",
        "label": "Anything else?",
        "kind": "TEXT",
        "min": None,
        "max": 50,
        "choices": None,
        "required": False,
    }
    assert made["questions"][3]["choices"] == ["good", "ok", "bad"]


@pytest.mark.parametrize(
    ("question", "field", "code"),
    [
        ({"key": "e", "label": "E", "kind": "SCALE"}, "questions[0].min", "REQUIRED"),
        (
            {"key": "e", "label": "E", "kind": "SCALE", "min": 5, "max": 1},
            "questions[0].min",
            "OUT_OF_RANGE",
        ),
        (
            {"key": "e", "label": "E", "kind": "SCALE", "min": 0, "max": 1000},
            "questions[0].max",
            "OUT_OF_RANGE",
        ),
        (
            {"key": "c", "label": "C", "kind": "CHOICE", "choices": ["only"]},
            "questions[0].choices",
            "OUT_OF_RANGE",
        ),
        (
            {"key": "c", "label": "C", "kind": "CHOICE", "choices": ["a", "a"]},
            "questions[0].choices",
            "DUPLICATE",
        ),
        (
            {"key": "c", "label": "C", "kind": "CHOICE", "choices": ["a", "b"], "max": 3},
            "questions[0].min",
            "INVALID",
        ),
        (
            {"key": "n", "label": "N", "kind": "NUMBER", "choices": ["a", "b"]},
            "questions[0].choices",
            "INVALID",
        ),
        (
            {"key": "t", "label": "T", "kind": "TEXT", "max": 10**6},
            "questions[0].max",
            "OUT_OF_RANGE",
        ),
        ({"key": "Bad Key", "label": "B", "kind": "TEXT"}, "questions[0].key", "INVALID"),
        ({"key": "t", "label": "  ", "kind": "TEXT"}, "questions[0].label", "REQUIRED"),
    ],
)
async def test_bad_questions_are_named_and_change_nothing(
    setup: Setup, question: dict[str, Any], field: str, code: str
) -> None:
    before = await setup.factory.count("questionnaire_versions")
    made = await setup.create([question])
    assert made["__typename"] == "ValidationError", made
    assert (made["field"], made["code"]) == (field, code), made
    assert await setup.factory.count("questionnaire_versions") == before


async def test_repeated_keys_no_questions_and_other_coaches(setup: Setup) -> None:
    twice = await setup.create([QUESTIONS[0], QUESTIONS[0]])
    assert (twice["field"], twice["code"]) == ("questions[1].key", "DUPLICATE")
    none = await setup.create([])
    assert (none["field"], none["code"]) == ("questions", "OUT_OF_RANGE")
    for token in (
        token_for("coach", setup.other_coach.id),
        token_for("athlete", setup.athlete.id),
    ):
        refused = await setup.create(QUESTIONS, token)
        assert refused["__typename"] == "PermissionDeniedError"
    assert (await setup.create(QUESTIONS, token_for("admin")))["__typename"] == "Questionnaire"


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"bogus": 1}, "answers.bogus", "UNKNOWN_KEY"),
        ({"effort": 11}, "answers.effort", "OUT_OF_RANGE"),
        ({"effort": 0}, "answers.effort", "OUT_OF_RANGE"),
        ({"effort": 7.5}, "answers.effort", "WRONG_TYPE"),
        ({"effort": "7"}, "answers.effort", "WRONG_TYPE"),
        ({"effort": True}, "answers.effort", "WRONG_TYPE"),
        ({"effort": None}, "answers.effort", "REQUIRED"),
        ({"sleep_hours": 25}, "answers.sleep_hours", "OUT_OF_RANGE"),
        ({"sleep_hours": "eight"}, "answers.sleep_hours", "WRONG_TYPE"),
        ({"notes": "x" * 51}, "answers.notes", "TOO_LONG"),
        ({"notes": 5}, "answers.notes", "WRONG_TYPE"),
        ({"mood": "great"}, "answers.mood", "NOT_A_CHOICE"),
        ({"mood": ["ok"]}, "answers.mood", "NOT_A_CHOICE"),
    ],
)
async def test_bad_answers_name_the_key_and_store_nothing(
    setup: Setup, change: dict[str, Any], field: str, code: str
) -> None:
    session = await setup.session()
    answers = {k: v for k, v in (GOOD | change).items() if v is not None}
    if change == {"effort": None}:
        answers.pop("effort", None)
    refused = await setup.submit(session, answers)
    assert refused["__typename"] == "ValidationError", refused
    assert (refused["field"], refused["code"]) == (field, code), refused
    assert field.split(".")[1] in refused["message"]
    assert await setup.factory.count("session_feedback") == 0


async def test_answers_must_be_an_object(setup: Setup) -> None:
    session = await setup.session()
    for answers in ([1, 2], "effort=7", 7):
        refused = await setup.submit(session, answers)
        assert (refused["field"], refused["code"]) == ("answers", "INVALID"), refused


async def test_submission_rules(setup: Setup) -> None:
    done = await setup.session()
    # optional questions may be left out; 8.0 is a whole step of the scale
    given = await setup.submit(done, {"effort": 8.0, "sleep_hours": 6, "mood": "good"})
    assert given["__typename"] == "Feedback", given
    assert given["answers"] == {"effort": 8, "sleep_hours": 6, "mood": "good"}
    assert given["questionnaire"]["version"] == 1
    again = await setup.submit(done, GOOD)
    assert again["__typename"] == "ConflictError"
    scheduled = await setup.session(status="SCHEDULED")
    assert (await setup.submit(scheduled, GOOD))["__typename"] == "ConflictError"
    other = await setup.session()
    for token in (token_for("coach", setup.coach.id), token_for("admin")):
        refused = await setup.submit(other, GOOD, token)
        assert refused["__typename"] == "PermissionDeniedError", refused
    stranger = await setup.submit(other, GOOD, token_for("athlete", setup.other_athlete.id))
    assert stranger["__typename"] == "PermissionDeniedError"
    # a questionnaire of another coach is not this session's to answer
    setup_other = Setup(setup.gql, setup.factory)
    setup_other.coach = setup.other_coach
    foreign = (await setup_other.create(QUESTIONS))["id"]
    refused = await setup.submit(other, GOOD, q=foreign)
    assert (refused["field"], refused["code"]) == ("questionnaireId", "NOT_THE_COACHS")
    assert await setup.factory.count("session_feedback") == 1


async def test_edits_add_versions_and_old_answers_stay(setup: Setup) -> None:
    first = await setup.session(days_ago=3)
    assert (await setup.submit(first, GOOD))["__typename"] == "Feedback"
    revised = [
        {**QUESTIONS[0], "max": 5},  # effort 7, answered before, is out of the new bounds
        QUESTIONS[3],
    ]
    body = await setup.gql(
        REVISE,
        {"id": setup.questionnaire, "input": {"title": "Shorter", "questions": revised}},
        token_for("coach", setup.coach.id),
    )
    made = body["data"]["reviseQuestionnaire"]
    assert (made["version"], made["latestVersion"]) == (2, 2) and len(made["questions"]) == 2
    refused = await setup.gql(
        REVISE,
        {"id": setup.questionnaire, "input": {"title": "Mine", "questions": revised}},
        token_for("coach", setup.other_coach.id),
    )
    assert refused["data"]["reviseQuestionnaire"]["__typename"] == "PermissionDeniedError"
    # the old answers read as given, with the questions they answered
    body = await setup.gql(
        FEEDBACK,
        {"id": to_global_id("TrainingSession", first.id)},
        token_for("coach", setup.coach.id),
    )
    [old] = body["data"]["node"]["feedback"]
    assert old["answers"] == GOOD
    assert (
        old["questionnaire"]["version"] == 1
        and old["questionnaire"]["title"] == "After the session"
    )
    assert [q["key"] for q in old["questionnaire"]["questions"]] == [q["key"] for q in QUESTIONS]
    # new answers are checked against version 2
    second = await setup.session(days_ago=2)
    refused = await setup.submit(second, {"effort": 7, "mood": "ok"})
    assert (refused["field"], refused["code"]) == ("answers.effort", "OUT_OF_RANGE")
    gone = await setup.submit(second, {"effort": 3, "mood": "ok", "notes": "hi"})
    assert (gone["field"], gone["code"]) == ("answers.notes", "UNKNOWN_KEY")
    given = await setup.submit(second, {"effort": 3, "mood": "ok"})
    assert given["questionnaire"]["version"] == 2
    body = await setup.gql(
        "query($id: ID!) { node(id: $id) { ... on Questionnaire { version questions { key } } } }",
        {"id": setup.questionnaire},
        token_for("athlete", setup.athlete.id),
    )
    assert body["data"]["node"]["version"] == 2


async def test_feedback_is_read_under_the_session_rule(setup: Setup) -> None:
    session = await setup.session()
    await setup.submit(session, GOOD)
    variables = {"id": to_global_id("TrainingSession", session.id)}
    for token in (
        token_for("admin"),
        token_for("coach", setup.coach.id),
        token_for("athlete", setup.athlete.id),
    ):
        body = await setup.gql(FEEDBACK, variables, token)
        assert body["data"]["node"]["feedback"][0]["answers"] == GOOD, body
    for token in (
        token_for("coach", setup.other_coach.id),
        token_for("athlete", setup.other_athlete.id),
        None,
    ):
        body = await setup.gql(FEEDBACK, variables, token)
        assert body["data"]["node"] is None and body["errors"], body
    # the questionnaire itself: its coach, admins and that coach's athletes
    query = "query($id: ID!) { node(id: $id) { ... on Questionnaire { title } } }"
    for token, allowed in (
        (token_for("athlete", setup.athlete.id), True),
        (token_for("athlete", setup.other_athlete.id), False),
        (token_for("coach", setup.other_coach.id), False),
    ):
        body = await setup.gql(query, {"id": setup.questionnaire}, token)
        assert (body["data"]["node"] is not None) is allowed, body


async def test_one_athletes_answers_to_one_question_over_time(setup: Setup) -> None:
    efforts = [4, 6, 5, 8]
    sessions = []
    for i, effort in enumerate(efforts):
        session = await setup.session(days_ago=10 - i)
        sessions.append(session)
        assert (await setup.submit(session, GOOD | {"effort": effort}))["__typename"] == "Feedback"
    variables = {
        "a": to_global_id("Athlete", setup.athlete.id),
        "q": setup.questionnaire,
        "key": "effort",
    }
    body = await setup.gql(OVER_TIME, variables, token_for("coach", setup.coach.id))
    assert "errors" not in body, body
    found = body["data"]["feedbackAnswers"]
    assert [a["value"] for a in found] == efforts
    assert [a["session"]["id"] for a in found] == [
        to_global_id("TrainingSession", s.id) for s in sessions
    ]
    assert [a["submittedAt"] for a in found] == sorted(a["submittedAt"] for a in found)
    body = await setup.gql(OVER_TIME, variables | {"last": 2}, token_for("coach", setup.coach.id))
    assert [a["value"] for a in body["data"]["feedbackAnswers"]] == efforts[-2:]
    mine = await setup.gql(OVER_TIME, variables, token_for("athlete", setup.athlete.id))
    assert [a["value"] for a in mine["data"]["feedbackAnswers"]] == efforts
    # a coach not coaching the athlete reads nothing of it
    body = await setup.gql(OVER_TIME, variables, token_for("coach", setup.other_coach.id))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await setup.gql(OVER_TIME, variables | {"key": "nope"}, token_for("admin"))
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await setup.gql(OVER_TIME, variables | {"last": 1000}, token_for("admin"))
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # a question since removed keeps its history
    await setup.gql(
        REVISE,
        {"id": setup.questionnaire, "input": {"title": "Mood only", "questions": [QUESTIONS[3]]}},
        token_for("coach", setup.coach.id),
    )
    body = await setup.gql(OVER_TIME, variables, token_for("coach", setup.coach.id))
    assert [a["value"] for a in body["data"]["feedbackAnswers"]] == efforts
    assert {a["version"] for a in body["data"]["feedbackAnswers"]} == {1}


async def test_a_coaches_questionnaires_are_listed_for_it_and_its_athletes(setup: Setup) -> None:
    await setup.create([QUESTIONS[3]])
    query = """query($id: ID!) { node(id: $id) { ... on Coach {
      questionnaires { id version questions { key } } } } }"""
    variables = {"id": to_global_id("Coach", setup.coach.id)}
    for token in (
        token_for("coach", setup.coach.id),
        token_for("athlete", setup.athlete.id),
        token_for("admin"),
    ):
        body = await setup.gql(query, variables, token)
        listed = body["data"]["node"]["questionnaires"]
        assert len(listed) == 2 and listed[0]["id"] == setup.questionnaire, body
    for token in (
        token_for("coach", setup.other_coach.id),
        token_for("athlete", setup.other_athlete.id),
    ):
        body = await setup.gql(query, variables, token)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
