"""Query budgets (depth, aliases, cost): the limits of before, in time linear in the document."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from graphql import (
    DocumentNode,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    SelectionSetNode,
    Visitor,
    get_introspection_query,
    parse,
    validate,
    visit,
)
from strawberry.extensions import QueryDepthLimiter
from strawberry.extensions.max_aliases import count_fields_with_alias
from strawberry.extensions.query_depth_limiter import get_fragments

from coachgraph.config import Limits
from coachgraph.schema import limits
from coachgraph.schema.limits import (
    PAGE_CAPS,
    Budget,
    DocumentMeasure,
    Measure,
    measure_document,
)
from coachgraph.schema.schema import build_schema
from tests.conftest import GraphQLClient, token_for

BUDGET = Budget.from_limits(Limits())
SCHEMA: GraphQLSchema = build_schema()._schema


def measure_of(document: str | DocumentNode, budget: Budget = BUDGET) -> DocumentMeasure:
    ast = parse(document) if isinstance(document, str) else document
    return measure_document(ast, budget, SCHEMA)


def doubling(levels: int, name: str = "", leaf: str = "coaches { totalCount }") -> str:
    """Fragments that each spread the previous one twice: 2**levels copies of `leaf`."""
    parts = [f"fragment F0 on Query {{ {leaf} }}"]
    parts += [f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, levels + 1)]
    return " ".join(parts) + f" query {name} {{ ...F{levels} }}"


def selection_sets(document: DocumentNode) -> int:
    class Count(Visitor):
        def __init__(self) -> None:
            super().__init__()
            self.seen = 0

        def enter_selection_set(self, *_: Any) -> None:
            self.seen += 1

    counter = Count()
    visit(document, counter)
    return counter.seen


def only(measured: DocumentMeasure) -> Measure:
    [(_, measure)] = measured.operations
    return measure


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


# --- linear time --------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [20, 40, 80])
async def test_doubling_fragments_are_refused(gql: GraphQLClient, levels: int) -> None:
    body = await gql(doubling(levels))  # anonymous, as the attacker sent it
    assert body.get("data") is None
    assert code(body) == "QUERY_TOO_COMPLEX", body
    assert "cost" in body["errors"][0]["message"]


async def test_doubling_aliases_are_counted_without_expanding(gql: GraphQLClient) -> None:
    # 2**60 aliased fields: the count saturates instead of being expanded
    document = doubling(60, leaf="a: coaches { b: totalCount }")
    measure = only(measure_of(document))
    assert measure.aliases == BUDGET.max_aliases + 1
    assert measure.cost == BUDGET.max_cost + 1
    body = await gql(document)
    messages = [e["message"] for e in body["errors"]]
    assert any("aliases" in m for m in messages), messages
    assert {e["extensions"]["code"] for e in body["errors"]} == {"QUERY_TOO_COMPLEX"}


async def test_rule_visits_grow_linearly(
    gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted through HTTP, on what the app's validation rule actually did."""
    measured: list[DocumentMeasure] = []
    real = limits.measure_document

    def recording(document: DocumentNode, budget: Budget, schema: GraphQLSchema) -> DocumentMeasure:
        measured.append(real(document, budget, schema))
        return measured[-1]

    monkeypatch.setattr(limits, "measure_document", recording)
    visits = {}
    for levels in (20, 40, 80):
        # a name of its own: ValidationCache would answer a document seen by another test
        body = await gql(doubling(levels, name=f"Linear{levels}"))
        assert code(body) == "QUERY_TOO_COMPLEX"
        visits[levels] = measured[-1].visits
    assert len(measured) == 3
    # each level adds one fragment of two spreads: the same few visits per level
    assert (visits[40] - visits[20]) / 20 == (visits[80] - visits[40]) / 40
    assert visits[80] <= 4.5 * visits[20], visits
    assert visits[80] < 6 * len(doubling(80).split()), visits  # linear in the tokens, too


async def test_fragment_bodies_are_evaluated_once(
    gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluated: Counter[int] = Counter()
    real = limits._Meter._combine

    def counting(meter: limits._Meter, node: SelectionSetNode) -> Measure:
        evaluated[id(node)] += 1
        return real(meter, node)

    monkeypatch.setattr(limits._Meter, "_combine", counting)
    document = doubling(40, name="Once")
    body = await gql(document)
    assert code(body) == "QUERY_TOO_COMPLEX"
    assert set(evaluated.values()) == {1}
    # the operation, 41 fragment bodies and the one nested under `coaches`
    assert len(evaluated) == selection_sets(parse(document)) == 43


def test_a_spread_chain_deeper_than_the_recursion_limit_is_measured() -> None:
    levels = 5_000  # beyond the token limit over HTTP; the walk is iterative all the same
    document = " ".join(
        ["fragment F0 on Query { coaches { totalCount } }"]
        + [f"fragment F{i} on Query {{ ...F{i - 1} }}" for i in range(1, levels + 1)]
        + [f"{{ ...F{levels} }}"]
    )
    measured = measure_of(document)
    assert only(measured) == Measure(depth=1, aliases=0, cost=21)  # coaches: 20 by default
    assert measured.evaluations == levels + 3


# --- hostile shapes answer coded errors ----------------------------------------------------


def test_cycles_are_measured_without_looping() -> None:
    document = parse(
        "fragment A on Query { coaches { totalCount } ...B } "
        "fragment B on Query { ...A } { ...A ...B }"
    )
    measured = measure_of(document)
    # the operation, A, B and the body of `coaches`, once each; A's spread of B (open when A
    # is measured: the walk reached A from B) counts nothing. A = coaches (20 by default, of
    # totalCount) = 21, B = ...A = 21
    assert only(measured).cost == 42
    assert measured.evaluations == 4


@pytest.mark.parametrize(
    "document",
    [
        "fragment A on Query { ...B } fragment B on Query { ...A } { ...A }",
        "fragment A on Query { ...A } { ...A }",
        "fragment A on Query { coaches { edges { node { ...C } } } } "
        "fragment C on Coach { programs { coach { ...C } } } { ...A }",
    ],
    ids=["pair", "self", "nested"],
)
async def test_fragment_cycles_answer_a_coded_error(gql: GraphQLClient, document: str) -> None:
    body = await gql(document)
    assert body.get("data") is None
    assert code(body) == "BAD_USER_INPUT", body  # NoFragmentCyclesRule's refusal
    assert "within itself" in body["errors"][0]["message"]


async def test_deep_nesting_is_refused_by_the_parser(gql: GraphQLClient) -> None:
    # 100,000 nested selection sets: graphql-core stops at 200, before the token limit
    body = await gql("{ a" * 100_000 + "}" * 100_000)
    assert code(body) == "QUERY_TOO_COMPLEX", body
    assert "nested too deeply" in body["errors"][0]["message"]


async def test_unbalanced_braces_are_bad_input(gql: GraphQLClient) -> None:
    body = await gql("{" * 100_000 + "}" * 100_000)
    assert code(body) == "BAD_USER_INPUT", body


# --- the limits of before ------------------------------------------------------------------


def nested(depth: int) -> str:
    """A query `depth` fields deep: coaches > edges > node, then programs > coach > ..."""
    inner = depth - 3
    chain = "programs { coach { " * (inner // 2) + ("programs { title } " if inner % 2 else "name ")
    return "{ coaches { edges { node { " + chain + "} }" * (inner // 2) + " } } } }"


def aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: coaches {{ totalCount }}" for i in range(count)) + " }"


@pytest.mark.parametrize(
    ("query", "accepted"),
    [
        (nested(12), True),
        (nested(13), False),
        (aliases(30), True),
        (aliases(31), False),
        # 16 aliases spread twice are 32
        (
            "{ ...A ...A } fragment A on Query { "
            + " ".join(f"a{i}: skills {{ totalCount }}" for i in range(16))
            + " }",
            False,
        ),
        (
            "{ coaches(first: 100) { edges { node { athletes(first: 100) { totalCount } } } } }",
            True,
        ),
        (
            "{ coaches(first: 100) { edges { node { athletes(first: 100) { edges { node {"
            " sessions(first: 100) { edges { node { id } } } } } } } } } }",
            False,
        ),
        (get_introspection_query(), True),  # GraphiQL's: introspection counts no depth
        ("{ " + "__typename " * 6_000 + "}", False),  # MaxTokensLimiter, still in place
    ],
    ids=[
        "depth-12",
        "depth-13",
        "aliases-30",
        "aliases-31",
        "aliases-via-fragment",
        "cost-ok",
        "cost-over",
        "introspection",
        "tokens",
    ],
)
async def test_limits_refuse_what_they_refused_before(
    gql: GraphQLClient, query: str, accepted: bool
) -> None:
    body = await gql(query, token=token_for("admin"))
    if accepted:
        assert "errors" not in body, body
    else:
        assert body.get("data") is None
        assert code(body) == "QUERY_TOO_COMPLEX", body


async def test_a_variable_first_costs_the_largest_page(gql: GraphQLClient) -> None:
    query = (
        "query Q($n: Int) { coaches(first: $n) { edges { node { athletes(first: $n) {"
        " edges { node { sessions(first: $n) { totalCount } } } } } } } }"
    )
    body = await gql(query, {"n": 1}, token=token_for("admin"))
    assert code(body) == "QUERY_TOO_COMPLEX", body


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        # no `first`: the argument's default in the schema (coaches 20, skills 50)
        ("{ coaches { totalCount } }", Measure(depth=1, aliases=0, cost=21)),
        ("{ skills { totalCount } }", Measure(depth=1, aliases=0, cost=51)),
        ("{ coaches(first: 7) { totalCount } }", Measure(depth=1, aliases=0, cost=8)),
        ("query($n: Int) { coaches(first: $n) { totalCount } }", Measure(1, 0, 101)),
        ("{ coaches(first: null) { totalCount } }", Measure(1, 0, 101)),
        ("{ coaches(first: -3) { totalCount } }", Measure(depth=1, aliases=0, cost=2)),
        ("{ coaches(first: 0) { totalCount } }", Measure(depth=1, aliases=0, cost=2)),
        ("{ coaches(first: " + "9" * 5000 + ") { totalCount } }", Measure(1, 0, 50_001)),
        ("{ a: coaches { b: totalCount } ... on Query { c: __typename } }", Measure(1, 3, 22)),
        ("{ __schema { types { fields { name } } } }", Measure(depth=0, aliases=0, cost=4)),
        ("{ ...Missing }", Measure(depth=0, aliases=0, cost=0)),
        # fields with no `first` in the schema, or unknown ones, multiply by 1
        ("{ viewer { coach { programs { title } } } }", Measure(3, 0, 4)),
        ("{ nope(first: 90) { totalCount } }", Measure(depth=1, aliases=0, cost=2)),
        ("{ viewer(first: 90) { role } }", Measure(depth=1, aliases=0, cost=2)),
        ("{ ... on Nope { coaches { totalCount } } }", Measure(1, 0, 2)),
        # samples: 1000 by default, up to max_sample_page (5000) through a variable
        (
            'query($n: Int) { node(id: "x") { ... on TrainingSession {'
            " samples(first: $n) { edges { node { value } } } } } }",
            Measure(depth=4, aliases=0, cost=1 + 1 + 5_000 * 3),
        ),
        (
            '{ node(id: "x") { ...S } } fragment S on TrainingSession { samples { totalCount } }',
            Measure(depth=2, aliases=0, cost=1 + 1 + 1_000 * 1),
        ),
        (
            '{ node(id: "x") { ... on TrainingSession { samples(first: 3) { totalCount } } } }',
            Measure(depth=2, aliases=0, cost=1 + 1 + 3 * 1),
        ),
        # a field selected on an interface (Node) or through a union (SearchResult)
        ('{ node(id: "x") { id ... on Coach { athletes { totalCount } } } }', Measure(2, 0, 23)),
        (
            '{ search(query: "a", first: 2) { edges { node { ... on Coach {'
            " sessions { totalCount } } } } } }",
            Measure(depth=4, aliases=0, cost=1 + 2 * (1 + 1 + 1 + 20)),
        ),
        # a subscription's root type
        (
            'subscription { matchUpdates(athleteId: "x") { score } }',
            Measure(depth=1, aliases=0, cost=1 + 10),
        ),
    ],
)
def test_measures(document: str, expected: Measure) -> None:
    assert only(measure_of(document)) == expected


NESTED_DEFAULTS = (
    "{ coaches { edges { node { athletes { edges { node { sessions { edges { node {"
    " samples { edges { node { value } } } } } } } } } } } } }"
)


async def test_default_page_sizes_are_costed(gql: GraphQLClient) -> None:
    """No `first` anywhere, but 20 x 20 x 20 x 1000 samples by the schema's defaults."""
    assert only(measure_of(NESTED_DEFAULTS)).cost == BUDGET.cost_cap
    body = await gql(NESTED_DEFAULTS, token=token_for("admin"))
    assert body.get("data") is None
    assert code(body) == "QUERY_TOO_COMPLEX", body
    assert "cost" in body["errors"][0]["message"]


DASHBOARD = """{ coaches(first: 20) { edges { node {
  id name
  programs { id title }
  athletes(first: 10) { edges { node { id name skills { level skill { id name } } } } }
} } } }"""


async def test_a_dashboard_query_is_accepted(gql: GraphQLClient) -> None:
    # coaches 20 x (id, name, programs 3, athletes 1 + 10 x (edges, node, id, name, skills 5))
    assert only(measure_of(DASHBOARD)).cost == 1 + 20 * (1 + 1 + 2 + 3 + 1 + 10 * 9)
    body = await gql(DASHBOARD, token=token_for("admin"))
    assert "errors" not in body, body


async def test_a_variable_first_of_samples_costs_the_largest_sample_page(
    gql: GraphQLClient,
) -> None:
    limits = Limits()
    query = (
        "query Q($n: Int) { coaches(first: 1) { edges { node { sessions(first: 1) { edges {"
        " node { samples(first: $n) { edges { node { value } } } } } } } } } }"
    )
    cost = only(measure_of(query)).cost
    # coaches, edges, node, sessions, edges, node: 1 each (pages of 1); samples 1 + a page of
    # (edges, node, value)
    assert cost == 6 + 1 + limits.max_sample_page * 3
    # ten of them are over the budget with a page of 5000, under it with one of 100
    tenfold = query.replace("coaches(first: 1)", "coaches(first: 10)")
    assert only(measure_of(tenfold)).cost > limits.max_query_cost
    body = await gql(tenfold, {"n": 1}, token=token_for("admin"))
    assert code(body) == "QUERY_TOO_COMPLEX", body


def test_page_caps_name_fields_with_a_first_and_limits() -> None:
    limits = Limits()
    for (type_name, field_name), attribute in PAGE_CAPS.items():
        owner = SCHEMA.get_type(type_name)
        assert isinstance(owner, GraphQLObjectType), type_name
        assert "first" in owner.fields[field_name].args, (type_name, field_name)
        assert BUDGET.largest_page(type_name, field_name) == getattr(limits, attribute)
    assert BUDGET.largest_page("TrainingSession", "samples") == limits.max_sample_page
    assert BUDGET.largest_page("Query", "coaches") == limits.max_page_size


def test_a_fragment_costs_the_same_wherever_it_is_spread() -> None:
    """Memoised once: its parent type is its type condition, not where it is spread."""
    fragment = "fragment C on Coach { athletes { totalCount } }"
    alone = only(measure_of("{ coaches { edges { node { ...C } } } } " + fragment)).cost
    twice = (
        '{ coaches { edges { node { ...C } } } node(id: "x") { ...C } '
        "viewer { coach { ...C } } } " + fragment
    )
    measured = measure_of(twice)
    c = 1 + 20  # athletes, 20 by default, of totalCount
    assert alone == 1 + 20 * (1 + 1 + c)
    assert only(measured).cost == alone + (1 + c) + (1 + 1 + c)


DIFFERENTIAL = [
    "{ coaches { totalCount } }",
    "{ a: coaches { b: totalCount } c: skills { totalCount } __typename }",
    "{ __schema { types { name fields { name type { name ofType { name } } } } } }",
    'query Q { node(id: "x") { ... on Coach { programs { coach { ...C } } } } } '
    "fragment C on Coach { n: name programs { t: title coach { name } } }",
    "query One { x: viewer { role } } query Two { coaches { edges { node { y: name } } } }",
    doubling(6, leaf="a: coaches { edges { node { b: name } } }"),
    nested(13),
    get_introspection_query(),
]


@pytest.mark.parametrize("document", DIFFERENTIAL)
def test_depth_and_aliases_count_as_strawberry_did(document: str) -> None:
    """Strawberry's own counting (exponential, fine on these) is the reference."""
    ast = parse(document)
    depths: dict[str, int] = {}
    record: Callable[[dict[str, int]], None] = depths.update
    rules = QueryDepthLimiter(max_depth=1_000, callback=record).validation_rules
    validate(build_schema()._schema, ast, rules)
    aliases = sum(
        count_fields_with_alias(op, get_fragments(ast.definitions))
        for op in ast.definitions
        if isinstance(op, OperationDefinitionNode)
    )
    measured = measure_of(ast, Budget(1_000, 1_000, 10**9, 100))
    ours = {(op.name.value if op.name else "anonymous"): m.depth for op, m in measured.operations}
    assert ours == depths
    assert sum(m.aliases for _, m in measured.operations) == aliases
