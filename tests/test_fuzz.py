"""Fuzz: generated operations on every root field, as each of API.md's six viewers.

hypothesis-graphql writes valid documents for one root field (arguments, nested selections);
some have their root arguments moved into variables, and some of those variables then carry
text no store can hold (a lone surrogate, NUL). IDs are a mix of the records' real global IDs
and junk; cursors, time stamps and text lean towards the edges. Each document goes to the
API over HTTP once per viewer. Whatever the answer, it is never a 5xx, never INTERNAL, and
every error carries one of API.md's codes.

Bounded and seeded for CI: the same 20 examples per field on every run (derandomize=True),
3,600 requests in about 20 s. More examples, and new ones on each run, locally:
COACHGRAPH_FUZZ_EXAMPLES=300 COACHGRAPH_FUZZ_EXPLORE=1 pytest tests/test_fuzz.py
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import graphql
import httpx
import pytest
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries

from coachgraph.app import create_app
from coachgraph.config import Limits, Settings
from coachgraph.ids import encode_cursor, to_global_id
from coachgraph.media.model import new_key
from coachgraph.schema.schema import build_schema
from coachgraph.stores import coaches, media, programs, sessions
from coachgraph.stores.db import Database
from tests.conftest import token_for
from tests.factories import Factory

# On a failure Hypothesis's pytest plugin imports its patch writer, whose libcst warns on import;
# with warnings as errors that would abort the whole run (INTERNALERROR) instead of reporting.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

EXAMPLES = int(os.environ.get("COACHGRAPH_FUZZ_EXAMPLES", "20"))
EXPLORE = bool(os.environ.get("COACHGRAPH_FUZZ_EXPLORE"))  # new random examples on every run

# API.md: "Errors that are not typed results carry extensions.code" (INTERNAL is a bug here)
CODES = {
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "RATE_LIMITED",
    "QUERY_TOO_COMPLEX",
    "UNAVAILABLE",
    "PERSISTED_QUERY_NOT_FOUND",
    "OPERATION_NOT_TRUSTED",
}

SCHEMA = graphql.build_schema(build_schema().as_str())
assert SCHEMA.query_type is not None and SCHEMA.mutation_type is not None
ROOT_FIELDS = [("query", name) for name in SCHEMA.query_type.fields] + [
    ("mutation", name) for name in SCHEMA.mutation_type.fields
]

# The world() below makes these rows, in this order, in freshly truncated tables.
REAL_IDS = [
    to_global_id(type_name, raw_id)
    for type_name, count in (
        ("Coach", 2),
        ("Athlete", 2),
        ("Skill", 2),
        ("Program", 1),
        ("TrainingSession", 2),
        ("Media", 1),
    )
    for raw_id in range(1, count + 1)
]
JUNK_IDS = [
    "",
    " ",
    "null",
    to_global_id("Coach", 999),
    to_global_id("Athlete", 2**31),
    to_global_id("Coach", 2**63 - 1),
    to_global_id("Skill", 2**63),
    to_global_id("Nope", 1),
    to_global_id("Coach", 0),
    "Q29hY2g6LTE",  # Coach:-1
    "Q29hY2g6MS4w",  # Coach:1.0
    "Q29hY2g6IDE",  # Coach: 1
    "Q29hY2g6MQ==",
    "Q29hY2g6MQ%3D%3D",
    "=" * 80,
]
CURSORS = [
    encode_cursor(n) for n in (0, 1, 2, 99, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 10**30)
] + ["", "bogus", "Yzot", "YzoxLjU", "eDox"]  # c:-, c:1.5, x:1
DATES = [
    "2026-12-01T10:00:00+00:00",
    "2026-12-01T10:00:00Z",
    "2026-12-01T10:00:00",
    "2026-12-01",
    "0001-01-01T00:00:00+05:00",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:59:59.999999+00:00",
    "1899-12-31T23:59:59+00:00",
    "2200-01-01T00:00:00+00:00",
    "2026-02-30T00:00:00Z",
    "yesterday",
]
WORDS = [
    "running",
    "Paris",
    "UTC",
    "Europe/Paris",
    "skill-1",
    "coach",
    "image/png",
    " ",
    "",
    "run\x00",
]


def _text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(WORDS + CURSORS + DATES),
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    )


CUSTOM_SCALARS = {
    "ID": st.sampled_from(REAL_IDS + JUNK_IDS).map(nodes.String),
    "String": _text().map(nodes.String),
    "DateTime": st.one_of(
        st.sampled_from(DATES),
        st.datetimes(timezones=st.sampled_from([UTC, None])).map(datetime.isoformat),
    ).map(nodes.String),
    "JSON": st.sampled_from(["{}", "[]", '"x"', "1"]).map(nodes.String),
}


@dataclass(frozen=True)
class Operation:
    kind: str
    document: str
    variables: dict[str, Any]


def _root_type(kind: str) -> graphql.GraphQLObjectType:
    root = SCHEMA.query_type if kind == "query" else SCHEMA.mutation_type
    assert root is not None
    return root


def _as_variables(
    document: graphql.DocumentNode, root: graphql.GraphQLObjectType
) -> tuple[graphql.DocumentNode, dict[str, Any]]:
    """The same operation with its root fields' arguments passed as variables."""
    (operation,) = document.definitions
    assert isinstance(operation, graphql.OperationDefinitionNode)
    definitions: list[graphql.VariableDefinitionNode] = []
    variables: dict[str, Any] = {}
    selections: list[graphql.SelectionNode] = []
    for selection in operation.selection_set.selections:
        assert isinstance(selection, graphql.FieldNode)
        field = root.fields[selection.name.value]
        arguments = []
        for argument in selection.arguments or ():
            name = f"v{len(definitions)}"
            definitions.append(
                graphql.VariableDefinitionNode(
                    variable=graphql.VariableNode(name=graphql.NameNode(value=name)),
                    type=graphql.parse_type(str(field.args[argument.name.value].type)),
                )
            )
            variables[name] = graphql.value_from_ast_untyped(argument.value)
            arguments.append(
                graphql.ArgumentNode(
                    name=argument.name,
                    value=graphql.VariableNode(name=graphql.NameNode(value=name)),
                )
            )
        selections.append(
            graphql.FieldNode(
                alias=selection.alias,
                name=selection.name,
                arguments=tuple(arguments),
                directives=selection.directives,
                selection_set=selection.selection_set,
            )
        )
    rewritten = graphql.OperationDefinitionNode(
        operation=operation.operation,
        name=None,
        variable_definitions=tuple(definitions),
        directives=(),
        selection_set=graphql.SelectionSetNode(selections=tuple(selections)),
    )
    return graphql.DocumentNode(definitions=(rewritten,)), variables


def _strings(value: Any) -> Iterator[tuple[Any, Any]]:
    """(container, key) of every string inside a JSON value."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        if isinstance(item, str):
            yield value, key
        else:
            yield from _strings(item)


@st.composite
def operations(draw: st.DrawFn, kind: str, field: str) -> Operation:
    strategy = queries if kind == "query" else mutations
    # one in four breaks the schema once (an unknown field, a wrong type, a missing argument),
    # where there is an argument to break
    modes = [Mode.POSITIVE] * 3 + [Mode.NEGATIVE] if _root_type(kind).fields[field].args else []
    mode = draw(st.sampled_from(modes)) if modes else Mode.POSITIVE
    document: graphql.DocumentNode = draw(
        strategy(
            SCHEMA, fields=[field], custom_scalars=CUSTOM_SCALARS, print_ast=lambda d: d, mode=mode
        )
    )
    variables: dict[str, Any] = {}
    if mode is Mode.POSITIVE and draw(st.booleans()):
        document, variables = _as_variables(document, _root_type(kind))
        places = list(_strings(variables))
        if places and draw(st.sampled_from([True, True, False])):
            container, key = draw(st.sampled_from(places))
            container[key] += draw(st.sampled_from(["\ud800", "\udfff", "\x00", "\ud83d\ude00"]))
    return Operation(kind, graphql.print_ast(document), variables)


@dataclass(frozen=True)
class World:
    tokens: dict[str, str | None] = dataclasses.field(repr=False)  # the six viewers of API.md


async def _world(db: Database, factory: Factory) -> World:
    """Records for every viewer to reach: a coach with its athlete, a former coach, another
    athlete, skills, a program with an enrollment, sessions of both coaches, a media."""
    coach = await factory.coach()
    former = await factory.coach()
    athlete = await factory.athlete(looking_for_coach=True)
    other = await factory.athlete()
    skill = await factory.skill()
    await factory.skill(prerequisites=[skill.id])
    program = await factory.program(coach.id, [skill.id])
    await factory.assign(coach.id, athlete.id)
    await factory.assign(former.id, athlete.id)
    await factory.teach(coach.id, skill.id)
    await factory.learn(athlete.id, skill.id)
    await factory.session(coach.id, athlete.id, program_id=program.id)
    async with db.transaction() as conn:
        await programs.enroll(conn, athlete_id=athlete.id, program_id=program.id)
        earlier = await sessions.schedule(
            conn,
            coach_id=former.id,
            athlete_id=athlete.id,
            program_id=None,
            scheduled_at=datetime.now(UTC) - timedelta(days=3),
            notes="before it left",
        )
        await sessions.transition(conn, session_id=earlier.id, to="LIVE")
        await coaches.unassign(conn, coach_id=former.id, athlete_id=athlete.id)
        await media.create(
            conn,
            owner_type="Athlete",
            owner_id=athlete.id,
            kind="IMAGE",
            content_type="image/png",
            size_bytes=10,
            storage_key=new_key(
                kind="IMAGE", owner_type="Athlete", owner_id=athlete.id, content_type="image/png"
            ),
            created_by=None,
        )
    assert (coach.id, former.id, athlete.id, other.id, program.id) == (1, 2, 1, 2, 1)
    return World(
        {
            "anonymous": None,
            "admin": token_for("admin"),
            "coach": token_for("coach", coach.id),
            "former coach": token_for("coach", former.id),
            "athlete": token_for("athlete", athlete.id),
            "other athlete": token_for("athlete", other.id),
        }
    )


@pytest.fixture(scope="module")
async def fuzz_http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own whose rate limits the fuzzing cannot reach (it must not use up the
    shared app's budget either)."""
    generous = {f.name: 10**9 for f in fields(Limits) if "rate" in f.name}
    app = create_app(
        settings.with_(limits=replace(settings.limits, **generous)), start_projector=False
    )
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
async def world(db: Database, factory: Factory) -> World:
    return await _world(db, factory)


def check(viewer: str, op: Operation, response: httpx.Response) -> None:
    where = f"{viewer}: {op.document} {op.variables!r}"
    assert response.status_code < 500, f"{response.status_code} {response.text[:500]} <- {where}"
    assert response.headers["content-type"].startswith("application/"), where
    body = response.json()
    assert "data" in body or "errors" in body, where
    for error in body.get("errors") or ():
        code = (error.get("extensions") or {}).get("code")
        assert code in CODES, f"{code}: {error} <- {where}"


@pytest.mark.parametrize(("kind", "field"), ROOT_FIELDS, ids=[f for _, f in ROOT_FIELDS])
@settings(
    max_examples=EXAMPLES,
    derandomize=not EXPLORE,
    database=None,
    deadline=None,
    # The fixtures are made once per field on purpose: every example runs against the same
    # records, and what earlier examples wrote stays (a fuzz campaign on one database).
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_operation_answers_internal(
    fuzz_http: httpx.AsyncClient, world: World, kind: str, field: str, data: st.DataObject
) -> None:
    op = data.draw(operations(kind, field), label="operation")
    for viewer, token in world.tokens.items():
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # JSON escapes (ensure_ascii) carry lone surrogates as a browser's JSON.stringify does
        body = json.dumps({"query": op.document, "variables": op.variables})
        response = await fuzz_http.post("/graphql", content=body, headers=headers)
        check(viewer, op, response)
