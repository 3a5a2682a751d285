"""Questionnaire checks: the questions a coach defines, and the answers an athlete gives
against one version of them. Each failure is an InvalidInput naming the key or question."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from coachgraph.config import Limits
from coachgraph.errors import InvalidInput
from coachgraph.resolvers import validate
from coachgraph.stores.feedback import Question

KINDS = ("SCALE", "NUMBER", "TEXT", "CHOICE")
KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_SCALE_SPAN = 100  # a SCALE of more steps than this is a NUMBER
MAX_CHOICE_LENGTH = 100


@dataclass(frozen=True, slots=True)
class QuestionInput:
    """A question as a client defines it (the schema's QuestionInput, decoded)."""

    key: str
    label: str
    kind: str
    min: int | None = None
    max: int | None = None
    choices: list[str] | None = None
    required: bool = True


def _bad(message: str, field: str, code: str = "INVALID") -> InvalidInput:
    return InvalidInput(message, field=field, code=code)


def questions(given: list[QuestionInput], limits: Limits) -> list[Question]:
    """Checked questions: 1..max_questions, keys unique, bounds fitting each kind."""
    if not 1 <= len(given) <= limits.max_questions:
        raise _bad(
            f"questions must list 1 to {limits.max_questions} questions",
            "questions",
            "OUT_OF_RANGE",
        )
    seen: set[str] = set()
    checked = []
    for i, q in enumerate(given):
        field = f"questions[{i}]"
        if not KEY.fullmatch(q.key):
            raise _bad(
                f"{field}.key must be 1-40 lower-case letters, digits or _ (a letter first)",
                f"{field}.key",
            )
        if q.key in seen:
            raise _bad(f"{field}.key {q.key!r} is used twice", f"{field}.key", "DUPLICATE")
        seen.add(q.key)
        label = validate.text(q.label, field=f"{field}.label", max_length=limits.max_name_length)
        checked.append(_bounded(q, label, field, limits))
    return checked


def _bounded(q: QuestionInput, label: str, field: str, limits: Limits) -> Question:
    if q.kind not in KINDS:
        raise _bad(f"{field}.kind must be one of {', '.join(KINDS)}", f"{field}.kind")
    if q.kind != "CHOICE" and q.choices is not None:
        raise _bad(f"{field}.choices apply to CHOICE questions only", f"{field}.choices")
    if q.kind == "CHOICE":
        if q.min is not None or q.max is not None:
            raise _bad(f"{field}: min and max do not apply to CHOICE", f"{field}.min")
        return Question(q.key, label, q.kind, None, None, _choices(q, field, limits), q.required)
    low, high = q.min, q.max
    if low is not None and high is not None and low > high:
        raise _bad(f"{field}.min must not exceed max", f"{field}.min", "OUT_OF_RANGE")
    if q.kind == "SCALE":
        if low is None or high is None:
            raise _bad(f"{field}: a SCALE needs min and max", f"{field}.min", "REQUIRED")
        if high - low > MAX_SCALE_SPAN or low == high:
            raise _bad(
                f"{field}: a SCALE spans 2 to {MAX_SCALE_SPAN + 1} steps",
                f"{field}.max",
                "OUT_OF_RANGE",
            )
    if q.kind == "TEXT":
        for name, bound in (("min", low), ("max", high)):
            if bound is not None and not 0 <= bound <= limits.max_answer_length:
                raise _bad(
                    f"{field}.{name}: a TEXT length is 0 to {limits.max_answer_length}",
                    f"{field}.{name}",
                    "OUT_OF_RANGE",
                )
    return Question(q.key, label, q.kind, low, high, None, q.required)


def _choices(q: QuestionInput, field: str, limits: Limits) -> list[str]:
    given = q.choices or []
    if not 2 <= len(given) <= limits.max_question_choices:
        raise _bad(
            f"{field}.choices must list 2 to {limits.max_question_choices} choices",
            f"{field}.choices",
            "OUT_OF_RANGE",
        )
    cleaned = [
        validate.text(c, field=f"{field}.choices", max_length=MAX_CHOICE_LENGTH) for c in given
    ]
    if len(set(cleaned)) != len(cleaned):
        raise _bad(f"{field}.choices repeat a choice", f"{field}.choices", "DUPLICATE")
    return cleaned


def answers(asked: list[Question], given: object, limits: Limits) -> dict[str, Any]:
    """The answers, checked against the questions of one version: every key a question's,
    each required question answered, each value of its kind and within its bounds."""
    if not isinstance(given, dict):
        raise _bad("answers must be a JSON object of question keys", "answers")
    by_key = {q.key: q for q in asked}
    for key in given:
        if key not in by_key:
            shown = key if len(key) <= 60 else key[:60] + "…"
            raise _bad(
                f"answers.{shown} is not a question of this questionnaire",
                f"answers.{shown}",
                "UNKNOWN_KEY",
            )
    checked: dict[str, Any] = {}
    for q in asked:
        value = given.get(q.key)
        if isinstance(value, str) and q.kind == "TEXT" and not value.strip():
            value = None  # a blank text is no answer
        if value is None:
            if q.required:
                raise _bad(f"answers.{q.key} is required", f"answers.{q.key}", "REQUIRED")
            continue
        checked[q.key] = _answer(q, value, f"answers.{q.key}", limits)
    return checked


def _answer(q: Question, value: object, field: str, limits: Limits) -> Any:
    if q.kind == "CHOICE":
        if not isinstance(value, str) or value not in (q.choices or []):
            raise _bad(f"{field} must be one of the choices", field, "NOT_A_CHOICE")
        return value
    if q.kind == "TEXT":
        if not isinstance(value, str):
            raise _bad(f"{field} must be text", field, "WRONG_TYPE")
        high = q.max if q.max is not None else limits.max_answer_length
        text = validate.text(value, field=field, max_length=high)
        if q.min is not None and len(text) < q.min:
            raise _bad(f"{field} must be at least {q.min} characters", field, "TOO_SHORT")
        return text
    if q.kind == "SCALE":
        # 7.0 from a JSON client is 7; 7.5 is not a step of the scale
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(f"{field} must be a whole number", field, "WRONG_TYPE")
    elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{field} must be a number", field, "WRONG_TYPE")
    if q.min is not None and value < q.min:
        raise _bad(f"{field} must be at least {q.min}", field, "OUT_OF_RANGE")
    if q.max is not None and value > q.max:
        raise _bad(f"{field} must be at most {q.max}", field, "OUT_OF_RANGE")
    return value
