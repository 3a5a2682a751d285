"""GraphQL over HTTP as clients speak it (API.md, Protocols): application/graphql-response+json
and its statuses, Apollo's automatic persisted queries over POST and GET (with ETag/304),
trusted documents (the CLI's manifest, served), and bounded batches counted per operation.
Streaming transports and the legacy WebSocket protocol: tests/live/test_http_streams.py."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from coachgraph.api.documents import load_manifest
from coachgraph.app import create_app
from coachgraph.config import Settings, SettingsError
from coachgraph.stores.db import Database
from coachgraph.stores.documents import DocumentStore
from tests.conftest import token_for
from tests.factories import Factory
from tests.servers import cli_env
from tests.test_cli_commands import cli

GQL = "application/graphql-response+json"
GQL_ACCEPT = {"accept": f"{GQL}, application/json;q=0.9"}  # as Apollo Client 4 sends
SKILLS = "query Skills($first: Int) { skills(first: $first) { edges { node { name } } } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(digest: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def code_of(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


# --- application/graphql-response+json ------------------------------------------------------


async def test_graphql_response_json_when_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ __typename }"}, headers=GQL_ACCEPT)
    assert response.status_code == 200
    assert response.headers["content-type"] == GQL
    assert response.json() == {"data": {"__typename": "Query"}}
    legacy = await client.post("/graphql", json={"query": "{ __typename }"})
    assert legacy.headers["content-type"] == "application/json"
    for accept in ("*/*", f"application/json, {GQL};q=0.5", f"{GQL};q=0"):
        response = await client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"accept": accept}
        )
        assert response.headers["content-type"] == "application/json", accept


@pytest.mark.parametrize(
    "payload",
    [
        {"query": "{ __typename"},  # parse error
        {"query": "{ noSuchField }"},  # validation error
        {"query": "query($n: Int!) { skills(first: $n) { totalCount } }", "variables": {}},
        {"query": "query($n: Int!) { skills(first: $n) { totalCount } }", "variables": {"n": "x"}},
    ],
)
async def test_request_errors_are_4xx_without_data(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    response = await client.post("/graphql", json=payload, headers=GQL_ACCEPT)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == GQL
    body = response.json()
    assert "data" not in body and body["errors"], body
    # application/json keeps answering 200 with "data": null, as clients of it expect
    legacy = await client.post("/graphql", json=payload)
    assert legacy.status_code == 200 and legacy.json()["data"] is None


async def test_field_errors_keep_200_and_data(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": '{ __typename node(id: "bm90IGFuIGlk") { id } }'},
        headers=GQL_ACCEPT,
    )
    body = response.json()
    assert response.status_code == 200, body
    assert body["data"]["__typename"] == "Query"


async def test_refusals_follow_the_negotiated_type(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        content=b"{",
        headers={**GQL_ACCEPT, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == GQL
    body = response.json()
    assert "data" not in body and code_of(body) == "BAD_USER_INPUT"
    bad_token = await client.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={**GQL_ACCEPT, "authorization": "Bearer nope"},
    )
    assert bad_token.status_code == 401 and bad_token.headers["content-type"] == GQL
    assert code_of(bad_token.json()) == "UNAUTHENTICATED"


async def test_a_mutation_over_get_is_405(client: httpx.AsyncClient) -> None:
    mutation = 'mutation { startSession(id: "x") { __typename } }'
    response = await client.get("/graphql", params={"query": mutation})
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    assert code_of(response.json()) == "BAD_USER_INPUT"


# --- automatic persisted queries ----------------------------------------------------------------


async def test_apq_round_trip_over_post(client: httpx.AsyncClient, factory: Factory) -> None:
    await factory.skill(name="apq-post")
    query = SKILLS + " # post"
    digest = sha(query)
    missing = await client.post(
        "/graphql", json={"extensions": persisted(digest), "variables": {"first": 5}}
    )
    assert missing.status_code == 200  # Apollo's link gives up on APQ after a 400 or 500
    body = missing.json()
    assert body["errors"][0]["message"] == "PersistedQueryNotFound"
    assert code_of(body) == "PERSISTED_QUERY_NOT_FOUND"
    as_graphql_response = await client.post(
        "/graphql", json={"extensions": persisted(digest)}, headers=GQL_ACCEPT
    )
    assert as_graphql_response.status_code == 404  # as Apollo's router answers it
    assert code_of(as_graphql_response.json()) == "PERSISTED_QUERY_NOT_FOUND"
    assert "data" not in as_graphql_response.json()

    first = await client.post(
        "/graphql",
        json={"query": query, "extensions": persisted(digest), "variables": {"first": 5}},
    )
    assert first.json()["data"]["skills"]["edges"] == [{"node": {"name": "apq-post"}}]
    again = await client.post(
        "/graphql", json={"extensions": persisted(digest), "variables": {"first": 5}}
    )
    assert again.json() == first.json()


async def test_apq_hash_mismatch_is_refused_and_not_stored(client: httpx.AsyncClient) -> None:
    query = "{ __typename }"
    wrong = sha("{ somethingElse }")
    response = await client.post("/graphql", json={"query": query, "extensions": persisted(wrong)})
    assert response.status_code == 400
    assert code_of(response.json()) == "BAD_USER_INPUT"
    lookup = await client.post("/graphql", json={"extensions": persisted(wrong)})
    assert code_of(lookup.json()) == "PERSISTED_QUERY_NOT_FOUND"
    for bad in ({"version": 2, "sha256Hash": wrong}, {"version": 1, "sha256Hash": "zz"}):
        response = await client.post(
            "/graphql", json={"query": query, "extensions": {"persistedQuery": bad}}
        )
        assert response.status_code == 400 and code_of(response.json()) == "BAD_USER_INPUT"


async def test_apq_over_get_is_cacheable_for_anonymous_queries(
    client: httpx.AsyncClient, factory: Factory, admin_token: str
) -> None:
    await factory.skill(name="apq-get")
    await factory.skill(name="apq-get-2")
    query = SKILLS + " # get"
    digest = sha(query)
    params = {"extensions": json.dumps(persisted(digest)), "variables": '{"first": 3}'}
    # Apollo Client 3 sends `Accept: */*`: the hash-only GET must not render GraphiQL
    missing = await client.get("/graphql", params=params, headers={"accept": "*/*"})
    assert code_of(missing.json()) == "PERSISTED_QUERY_NOT_FOUND"
    assert "etag" not in missing.headers
    stored = await client.get("/graphql", params={**params, "query": query})
    assert len(stored.json()["data"]["skills"]["edges"]) == 2

    response = await client.get("/graphql", params=params)
    assert response.json() == stored.json()
    etag = response.headers["etag"]
    assert response.headers["cache-control"] == "public, max-age=60"
    assert "Authorization" in response.headers["vary"]
    cached = await client.get("/graphql", params=params, headers={"if-none-match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == etag
    other = await client.get(
        "/graphql", params={**params, "variables": '{"first": 1}'}, headers={"if-none-match": etag}
    )
    assert other.status_code == 200  # other variables, another answer

    authenticated = await client.get(
        "/graphql",
        params=params,
        headers={"authorization": f"Bearer {admin_token}", "if-none-match": etag},
    )
    assert authenticated.status_code == 200
    assert "etag" not in authenticated.headers and "cache-control" not in authenticated.headers
    not_persisted = await client.get(
        "/graphql", params={"query": query, "variables": '{"first": 3}'}
    )
    assert "etag" not in not_persisted.headers


async def test_apq_mutations_over_get_are_refused_not_cached(client: httpx.AsyncClient) -> None:
    mutation = 'mutation { startSession(id: "x") { __typename } }'
    digest = sha(mutation)
    post = await client.post(
        "/graphql",
        json={"query": mutation, "extensions": persisted(digest)},
        headers={"authorization": f"Bearer {token_for('admin')}"},
    )
    assert post.status_code == 200
    response = await client.get("/graphql", params={"extensions": json.dumps(persisted(digest))})
    assert response.status_code == 405
    assert "etag" not in response.headers and "cache-control" not in response.headers


async def test_the_persisted_store_is_bounded() -> None:
    store = DocumentStore(2)
    for n in range(3):
        await store.put(f"{n:064x}", f"{{ n{n}: __typename }}")
    assert await store.get(f"{0:064x}") is None
    assert await store.get(f"{2:064x}") == "{ n2: __typename }"


async def test_the_persisted_store_outlives_a_redis_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # nothing listens on port 1: every Redis call fails; the store is a cache, so requests go
    # on with this process's memory (a miss only makes the client send its query again)
    unreachable = aioredis.from_url(
        "redis://127.0.0.1:1/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    store = DocumentStore(10, unreachable)
    try:
        assert await store.get(sha("{ a }")) is None
        await store.put(sha("{ a }"), "{ a }")
        assert await store.get(sha("{ a }")) == "{ a }"
    finally:
        await store.close()
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not per request


def test_the_manifest_setting(tmp_path: Path) -> None:
    env = {"COACHGRAPH_TRUSTED_DOCUMENTS": str(tmp_path / "m.json")}
    assert Settings.from_env(env).trusted_documents == tmp_path / "m.json"
    assert Settings.from_env({}).trusted_documents is None


# --- batches ---------------------------------------------------------------------------------


async def test_a_batch_answers_each_operation_in_order(
    client: httpx.AsyncClient, factory: Factory, admin_token: str
) -> None:
    await factory.skill(name="batched")
    create = """mutation { createSkill(input: {slug: "in-batch", name: "In batch", sport: "running"}) {
      __typename ... on Skill { name } } }"""
    response = await client.post(
        "/graphql",
        json=[
            {"query": SKILLS, "variables": {"first": 5}},
            {"query": create},
            {"query": SKILLS, "variables": {"first": 5}},
            {"query": "{ nope }"},
        ],
        headers={"authorization": f"Bearer {admin_token}"},
    )
    assert response.status_code == 200
    before, created, after, invalid = response.json()
    assert before["data"]["skills"]["edges"] == [{"node": {"name": "batched"}}]
    assert created == {"data": {"createSkill": {"__typename": "Skill", "name": "In batch"}}}
    # each operation is a request of its own: the query after the mutation reads what it wrote
    names = [edge["node"]["name"] for edge in after["data"]["skills"]["edges"]]
    assert sorted(names) == ["In batch", "batched"]
    assert invalid["errors"] and invalid["data"] is None


async def test_a_batch_with_persisted_queries(client: httpx.AsyncClient) -> None:
    query = "{ batchedApq: __typename }"
    response = await client.post(
        "/graphql",
        json=[
            {"extensions": persisted(sha(query))},
            {"query": query, "extensions": persisted(sha(query))},
            {"extensions": persisted(sha(query))},
        ],
    )
    missing, stored, found = response.json()
    assert code_of(missing) == "PERSISTED_QUERY_NOT_FOUND"
    assert stored == found == {"data": {"batchedApq": "Query"}}


async def test_batches_are_bounded(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json=[{"query": "{ __typename }"}] * 21)
    assert response.status_code == 413
    assert "at most 20" in response.json()["errors"][0]["message"]
    empty = await client.post("/graphql", json=[])
    assert empty.status_code == 400 and code_of(empty.json()) == "BAD_USER_INPUT"
    streamed = await client.post(
        "/graphql", json=[{"query": "{ __typename }"}], headers={"accept": "text/event-stream"}
    )
    assert streamed.status_code == 400 and code_of(streamed.json()) == "BAD_USER_INPUT"


async def test_a_stream_answers_document_errors_as_events(client: httpx.AsyncClient) -> None:
    # the parser cache raises a syntax error rather than returning it: still an event, coded
    response = await client.post(
        "/graphql", json={"query": "subscription {"}, headers={"accept": "text/event-stream"}
    )
    assert response.status_code == 200
    events = [block for block in response.text.split("\r\n\r\n") if block.strip()]
    assert events[0].startswith("event: next\r\ndata: ")
    error = json.loads(events[0].partition("data: ")[2])["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert events[-1].startswith("event: complete")


@pytest.fixture
async def app_with(settings: Settings, db: Database) -> Any:
    """An app of its own with some settings changed, served over ASGI."""
    made: list[LifespanManager] = []

    async def make(**changes: Any) -> httpx.AsyncClient:
        app = create_app(settings.with_(**changes), start_projector=False)
        manager = LifespanManager(app)
        await manager.__aenter__()
        made.append(manager)
        transport = httpx.ASGITransport(app=manager.app)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    yield make
    for manager in made:
        await manager.__aexit__(None, None, None)


async def test_each_operation_of_a_batch_counts_against_the_rate_limit(
    app_with: Any, settings: Settings
) -> None:
    limits = dataclasses.replace(settings.limits, rate_limit_burst=5, rate_limit_per_minute=5)
    async with await app_with(limits=limits) as client:
        response = await client.post(
            "/graphql", json=[{"query": "{ __typename }"}] * 6, headers=GQL_ACCEPT
        )
        assert response.status_code == 429
        assert response.headers["content-type"] == GQL
        assert code_of(response.json()) == "RATE_LIMITED"
        assert int(response.headers["retry-after"]) >= 1
        # a batch within the budget passes; then the middleware's own 429 is negotiated too
        batch = await client.post("/graphql", json=[{"query": "{ __typename }"}] * 2)
        assert batch.status_code == 200
        statuses = []
        for _ in range(3):
            single = await client.post(
                "/graphql", json={"query": "{ __typename }"}, headers=GQL_ACCEPT
            )
            statuses.append(single.status_code)
        assert statuses == [200, 200, 429]  # 5 a minute: 1 + (1 + 1) + 2
        assert single.headers["content-type"] == GQL and "data" not in single.json()


# --- trusted documents ---------------------------------------------------------------------------

OPERATIONS = """
query TrustedSkills($first: Int) { skills(first: $first) { edges { node { ...Bits } } } }
fragment Bits on Skill { name }
"""


async def test_trusted_documents_from_the_cli_manifest(
    app_with: Any, factory: Factory, tmp_path: Path
) -> None:
    await factory.skill(name="trusted")
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "skills.graphql").write_text(OPERATIONS)
    manifest = tmp_path / "manifest.json"
    code, _, err = await cli(
        "trusted-documents",
        str(tmp_path / "ops"),
        "-o",
        str(manifest),
        env=cli_env(tmp_path / "data"),
    )
    assert code == 0, err
    written = json.loads(manifest.read_text())
    assert written["format"] == "apollo-persisted-query-manifest"
    (operation,) = written["operations"]
    assert operation["name"] == "TrustedSkills" and operation["type"] == "query"
    assert operation["id"] == sha(operation["body"])

    async with await app_with(trusted_documents=manifest) as client:
        by_hash = await client.post(
            "/graphql",
            json={"extensions": persisted(operation["id"]), "variables": {"first": 2}},
        )
        assert by_hash.json()["data"]["skills"]["edges"] == [{"node": {"name": "trusted"}}]
        by_text = await client.post("/graphql", json={"query": operation["body"]})
        assert by_text.json()["data"]["skills"]["edges"][0]["node"]["name"] == "trusted"
        for payload in (
            {"query": "{ __typename }"},
            {"extensions": persisted(sha("{ __typename }"))},
            # registering a document, as APQ would, does not make it trusted
            {"query": "{ __typename }", "extensions": persisted(sha("{ __typename }"))},
        ):
            refused = await client.post("/graphql", json=payload)
            assert refused.status_code == 403, refused.text
            assert code_of(refused.json()) == "OPERATION_NOT_TRUSTED"
        batch = await client.post(
            "/graphql",
            json=[{"query": operation["body"]}, {"query": "{ __typename }"}],
        )
        listed, unlisted = batch.json()
        assert listed["data"] and code_of(unlisted) == "OPERATION_NOT_TRUSTED"


async def test_the_cli_refuses_operations_the_schema_refuses(tmp_path: Path) -> None:
    (tmp_path / "bad.graphql").write_text("query Bad { noSuchField }")
    code, _, err = await cli(
        "trusted-documents", str(tmp_path / "bad.graphql"), env=cli_env(tmp_path / "data")
    )
    assert code == 2 and "noSuchField" in err
    (tmp_path / "bad.graphql").write_text("{ __typename }")
    code, _, err = await cli(
        "trusted-documents", str(tmp_path / "bad.graphql"), env=cli_env(tmp_path / "data")
    )
    assert code == 2 and "without a name" in err


@pytest.mark.parametrize(
    "content", ["not json", '{"format": "apollo-persisted-query-manifest", "version": 2}', "[1]"]
)
def test_a_bad_manifest_is_refused_at_start(
    settings: Settings, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(content)
    with pytest.raises(SettingsError, match="COACHGRAPH_TRUSTED_DOCUMENTS"):
        create_app(settings.with_(trusted_documents=path))
    with pytest.raises(SettingsError, match="cannot read"):
        create_app(settings.with_(trusted_documents=tmp_path / "missing.json"))


def test_relay_manifests_are_accepted(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "relay.json"
    path.write_text(json.dumps({"abc123": "query A { __typename }"}))
    assert create_app(settings.with_(trusted_documents=path)) is not None
    assert load_manifest(path).by_id == {"abc123": "query A { __typename }"}
