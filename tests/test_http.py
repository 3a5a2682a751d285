"""The HTTP surface: tokens, limits, error codes, masking, health, GraphiQL."""

from __future__ import annotations

import httpx
import pytest

from coachgraph.ids import to_global_id
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer " + token_for("admin", ttl=-10),
        # signed with another secret
        "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoiQURNSU4iLCJleHAiOjk5OTk5OTk5OTl9."
        "Xq4fH6n4N9lQz0l6m0Ts8i1o2u3F2dDk0d0eYfYvJ1E",
    ],
)
async def test_bad_tokens_are_unauthenticated(client: httpx.AsyncClient, header: str) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ viewer { role } }"}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_token_must_name_its_subject(gql: GraphQLClient, factory: Factory) -> None:
    coach = await factory.coach()
    body = await gql("{ viewer { role coach { id } } }", token=token_for("coach", coach.id))
    assert body["data"]["viewer"]["coach"]["id"] == to_global_id("Coach", coach.id)


@pytest.mark.parametrize(
    "query",
    [
        # too deep
        "{ coaches { edges { node { "
        + "programs { coach { " * 6
        + "name"
        + " } }" * 6
        + " } } } }",
        # too many aliases
        "{ " + " ".join(f"a{i}: coaches {{ totalCount }}" for i in range(40)) + " }",
        # too many tokens
        "{ " + " ".join("__typename" for _ in range(6000)) + " }",
        # too costly: 100 x 100 x 100 nodes
        "{ coaches(first: 100) { edges { node { athletes(first: 100) { edges { node {"
        " sessions(first: 100) { edges { node { id } } } } } } } } } }",
    ],
    ids=["depth", "aliases", "tokens", "cost"],
)
async def test_query_budgets(gql: GraphQLClient, query: str) -> None:
    body = await gql(query, token=token_for("admin"))
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX", body


async def test_unexpected_errors_are_masked(gql: GraphQLClient, factory: Factory) -> None:
    await factory.skill()
    await factory.db.pool.execute("ALTER TABLE skills RENAME TO skills_away")
    try:
        body = await gql("{ skills { totalCount } }")
    finally:
        await factory.db.pool.execute("ALTER TABLE skills_away RENAME TO skills")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL"
    assert error["message"] == "Internal server error"
    assert "skills" not in error["message"] and "relation" not in str(body)


async def test_oversize_body_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        content=b"{" + b" " * 1_100_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413


# rate limits: tests/test_rate_limits.py


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json()["postgres"] == "ok"


async def test_graphiql_in_a_browser(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200 and "graphiql" in response.text.lower()


async def test_outbox_event_rolls_back_with_its_rows(factory: Factory) -> None:
    from coachgraph.stores import coaches

    before = await factory.snapshot()
    with pytest.raises(RuntimeError):
        async with factory.db.transaction() as conn:
            await coaches.create(
                conn,
                name="Ghost",
                sports=["run"],
                timezone="UTC",
                capacity=1,
            )
            inside = await conn.fetchval("SELECT count(*) FROM outbox")
            assert inside == before["outbox"] + 1
            raise RuntimeError("abort")
    assert await factory.snapshot() == before
    await factory.coach()
    after = await factory.db.pool.fetch("SELECT event, txid::text FROM outbox")
    assert [r["event"] for r in after] == ["coach.created"]
