"""Coaching depth (API.md, added 2026-11-30): compliance, questionnaires and session
feedback, program leaderboards."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON

from coachgraph.ids import decode_id, to_global_id
from coachgraph.resolvers import coaching
from coachgraph.resolvers.answers import QuestionInput as QuestionFields
from coachgraph.stores.compliance import Compliance as ComplianceRecord
from coachgraph.stores.feedback import Answer, FeedbackRecord, QuestionnaireRecord
from coachgraph.stores.feedback import Question as QuestionRecord

from .errors import ErrorResult, as_result
from .info import Info
from .node import Node
from .types import Athlete, Coach, TrainingSession, coach_by_id


@strawberry.type(
    description="Sessions scheduled and completed in the last `days` days and in "
    "the window before; cancelled sessions do not count."
)
class Compliance:
    days: int
    scheduled: int
    completed: int
    rate: float | None = strawberry.field(
        description="completed / scheduled, 0..1; null when nothing was scheduled."
    )
    previous_rate: float | None = strawberry.field(description="The same, the window before.")
    dropped: bool = strawberry.field(
        description="The rate fell by 20 points (0.2) or more against the window before."
    )

    @classmethod
    def from_record(cls, r: ComplianceRecord) -> Compliance:
        return cls(
            days=r.days,
            scheduled=r.scheduled,
            completed=r.completed,
            rate=r.rate,
            previous_rate=r.previous_rate,
            dropped=r.dropped,
        )


@strawberry.enum
class QuestionKind(enum.Enum):
    SCALE = "SCALE"
    NUMBER = "NUMBER"
    TEXT = "TEXT"
    CHOICE = "CHOICE"


@strawberry.type
class Question:
    key: str
    label: str
    kind: QuestionKind
    min: int | None = strawberry.field(
        description="SCALE and NUMBER: the smallest answer; TEXT: the fewest characters."
    )
    max: int | None = strawberry.field(
        description="SCALE and NUMBER: the largest answer; TEXT: the most characters."
    )
    choices: list[str] | None
    required: bool

    @classmethod
    def from_record(cls, q: QuestionRecord) -> Question:
        return cls(
            key=q.key,
            label=q.label,
            kind=QuestionKind(q.kind),
            min=q.min,
            max=q.max,
            choices=q.choices,
            required=q.required,
        )


@strawberry.type(description="A coach's questionnaire, at one version (edits add versions).")
class Questionnaire(Node):
    title: str
    version: int
    latest_version: int
    questions: list[Question]
    created_at: datetime
    record: strawberry.Private[QuestionnaireRecord]

    @classmethod
    def from_record(cls, r: QuestionnaireRecord) -> Questionnaire:
        return cls(
            id=strawberry.ID(to_global_id("Questionnaire", r.id)),
            title=r.title,
            version=r.version,
            latest_version=r.current_version,
            questions=[Question.from_record(q) for q in r.questions],
            created_at=r.created_at,
            record=r,
        )

    @strawberry.field
    async def coach(self, info: Info) -> Coach:
        return await coach_by_id(info, self.record.coach_id)


@strawberry.type(description="An athlete's answers to one questionnaire after a session.")
class Feedback:
    answers: JSON
    submitted_at: datetime
    record: strawberry.Private[FeedbackRecord]

    @classmethod
    def from_record(cls, r: FeedbackRecord) -> Feedback:
        return cls(answers=cast(JSON, r.answers), submitted_at=r.submitted_at, record=r)

    @strawberry.field(description="The questionnaire as it was when these answers were given.")
    async def questionnaire(self, info: Info) -> Questionnaire:
        return Questionnaire.from_record(await coaching.answered_version(info.context, self.record))


@strawberry.type(description="One answer to one question, in one session's feedback.")
class FeedbackAnswer:
    value: JSON
    version: int = strawberry.field(description="The questionnaire version it answered.")
    submitted_at: datetime
    session_id: strawberry.Private[int]

    @classmethod
    def from_answer(cls, a: Answer) -> FeedbackAnswer:
        return cls(
            value=cast(JSON, a.value),
            version=a.version,
            submitted_at=a.submitted_at,
            session_id=a.session_id,
        )

    @strawberry.field
    async def session(self, info: Info) -> TrainingSession:
        found = await info.context.loaders.session_by_id.load(self.session_id)
        assert found is not None  # read with the answer, under the session rule
        return TrainingSession.from_record(found)


@strawberry.input
class QuestionInput:
    key: str
    label: str
    kind: QuestionKind
    min: int | None = None
    max: int | None = None
    choices: list[str] | None = None
    required: bool = True

    def fields(self) -> QuestionFields:
        return QuestionFields(
            self.key, self.label, self.kind.value, self.min, self.max, self.choices, self.required
        )


@strawberry.input
class CreateQuestionnaireInput:
    coach_id: strawberry.ID
    title: str
    questions: list[QuestionInput]


@strawberry.input
class ReviseQuestionnaireInput:
    title: str
    questions: list[QuestionInput]


@strawberry.enum
class LeaderboardMetric(enum.Enum):
    TRAINING_MINUTES = "TRAINING_MINUTES"
    SESSIONS_COMPLETED = "SESSIONS_COMPLETED"
    AVG_POWER = "AVG_POWER"


@strawberry.enum
class LeaderboardPeriod(enum.Enum):
    WEEK = "WEEK"
    MONTH = "MONTH"
    ALL_TIME = "ALL_TIME"


@strawberry.type
class LeaderboardEntry:
    rank: int
    athlete: Athlete
    value: float


QuestionnaireResult = Annotated[
    Questionnaire | ErrorResult, strawberry.union("QuestionnaireResult")
]
FeedbackResult = Annotated[Feedback | ErrorResult, strawberry.union("FeedbackResult")]


def _questions(info: Info, given: list[QuestionInput]) -> list[QuestionFields]:
    return [q.fields() for q in given]


@strawberry.type
class CoachingQuery:
    @strawberry.field(
        description="The program's best athletes of the current ISO week, calendar month "
        "(UTC) or all time, over completed sessions of the program; ties by athlete id. For "
        "the program's coach, its enrolled athletes and admins (first: up to 100)."
    )
    async def leaderboard(
        self,
        info: Info,
        program_id: strawberry.ID,
        metric: LeaderboardMetric,
        period: LeaderboardPeriod,
        first: int | None = 10,
    ) -> list[LeaderboardEntry]:
        ranked = await coaching.leaderboard(
            info.context,
            program_id=decode_id(program_id, "Program", field="programId"),
            metric=metric.value,
            period=period.value,
            first=first,
        )
        return [
            LeaderboardEntry(rank=rank, athlete=Athlete.from_record(r), value=value)
            for rank, value, r in ranked
        ]

    @strawberry.field(
        description="One athlete's answers to one question of a questionnaire over time, "
        "oldest first: the latest `last` (up to 100), in sessions the viewer may read."
    )
    async def feedback_answers(
        self,
        info: Info,
        athlete_id: strawberry.ID,
        questionnaire_id: strawberry.ID,
        key: str,
        last: int | None = 50,
    ) -> list[FeedbackAnswer]:
        found = await coaching.answers_over_time(
            info.context,
            athlete_id=decode_id(athlete_id, "Athlete", field="athleteId"),
            questionnaire_id=decode_id(questionnaire_id, "Questionnaire", field="questionnaireId"),
            key=key,
            last=last,
        )
        return [FeedbackAnswer.from_answer(a) for a in found]


@strawberry.type
class CoachingMutation:
    @strawberry.mutation(description="A coach for itself, or an admin.")
    async def create_questionnaire(
        self, info: Info, input: CreateQuestionnaireInput
    ) -> QuestionnaireResult:
        return await as_result(
            lambda: coaching.create_questionnaire(
                info.context,
                coach_id=decode_id(input.coach_id, "Coach", field="coachId"),
                title=input.title,
                questions=_questions(info, input.questions),
            ),
            Questionnaire.from_record,
        )

    @strawberry.mutation(
        description="A new version of the questionnaire; answers to earlier ones stay valid."
    )
    async def revise_questionnaire(
        self, info: Info, id: strawberry.ID, input: ReviseQuestionnaireInput
    ) -> QuestionnaireResult:
        return await as_result(
            lambda: coaching.revise_questionnaire(
                info.context,
                decode_id(id, "Questionnaire"),
                title=input.title,
                questions=_questions(info, input.questions),
            ),
            Questionnaire.from_record,
        )

    @strawberry.mutation(
        description="The session's athlete, once the session completed: answers keyed by "
        "question key, checked against the questionnaire's latest version."
    )
    async def submit_feedback(
        self,
        info: Info,
        session_id: strawberry.ID,
        questionnaire_id: strawberry.ID,
        answers: JSON,
    ) -> FeedbackResult:
        given: Any = answers
        return await as_result(
            lambda: coaching.submit_feedback(
                info.context,
                session_id=decode_id(session_id, "TrainingSession", field="sessionId"),
                questionnaire_id=decode_id(
                    questionnaire_id, "Questionnaire", field="questionnaireId"
                ),
                given=given,
            ),
            Feedback.from_record,
        )


async def athlete_compliance(athlete: Athlete, info: Info, days: int | None) -> Compliance:
    found = await coaching.compliance(info.context, athlete.record, 30 if days is None else days)
    return Compliance.from_record(found)


async def session_feedback(session: TrainingSession, info: Info) -> list[Feedback]:
    found = await coaching.session_feedback(info.context, session.record)
    return [Feedback.from_record(r) for r in found]


async def coach_questionnaires(coach: Coach, info: Info) -> list[Questionnaire]:
    found = await coaching.questionnaires_of(info.context, coach.raw_id)
    return [Questionnaire.from_record(r) for r in found]


async def questionnaire_node(info: Info, raw_id: int) -> Questionnaire:
    return Questionnaire.from_record(await coaching.questionnaire(info.context, raw_id))
