"""Subscriptions over HTTP on a real server (uvicorn): Server-Sent Events (graphql-sse, distinct
connections) and multipart HTTP (Apollo's subscriptionSpec 1.0), with resume (`after`), the
token's lifetime and the open-connection cap of WebSocket; a client leaving ends its
subscription. And the legacy graphql-ws protocol running queries and mutations.

Every wait on the server is bounded (`WAIT`): httpx's read timeout never fires on a stream
whose heartbeats keep arriving, so a payload that never comes would hang the test; with
`next_within` and `all_within` it fails, saying what it waited for."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.ids import decode_cursor, encode_cursor, to_global_id
from coachgraph.runtime import Resources
from coachgraph.stores.db import Database
from coachgraph.stores.documents import DocumentStore
from tests.conftest import token_for
from tests.factories import Factory
from tests.live.conftest import WSClient, live_session, samples
from tests.servers import serve, until

METRICS = "subscription($id: ID!, $after: String) { sessionMetrics(sessionId: $id, after: $after) { cursor value } }"
RECORD = """mutation($id: ID!, $samples: [MetricSampleInput!]!) { recordMetrics(sessionId: $id, samples: $samples) {
  __typename } }"""
SSE = {"accept": "text/event-stream"}
WAIT = 15.0  # seconds one read of a stream may take before the test fails
T = TypeVar("T")
MULTIPART = {"accept": 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'}


@dataclasses.dataclass
class Server:
    url: str
    resources: Resources


@pytest.fixture(scope="module")
async def server(settings: Settings, tmp_root: Path) -> AsyncIterator[Server]:
    """One app of its own, with at most two open subscriptions per client."""
    limits = dataclasses.replace(settings.limits, ws_connections_per_client=2)
    ready: list[Resources] = []

    async def keep(resources: Resources) -> None:
        ready.append(resources)

    changed = settings.with_(data_dir=tmp_root / "streams", limits=limits)
    app = create_app(changed, start_projector=False, on_ready=keep)
    async with serve(app) as url:
        yield Server(url, ready[0])


@pytest.fixture
async def live(server: Server, db: Database) -> Server:
    await server.resources.projector.rebuild()
    return server


async def record(
    http: httpx.AsyncClient, server: Server, session_id: int, n: int, token: str
) -> None:
    response = await http.post(
        f"{server.url}/graphql",
        json={
            "query": RECORD,
            "variables": {"id": to_global_id("TrainingSession", session_id), "samples": samples(n)},
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.json()["data"]["recordMetrics"]["__typename"] == "RecordMetrics"


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) of a text/event-stream, comments (heartbeats) left out."""
    event, data = "", ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data = line.partition(":")[2].strip()
        elif line == "" and event:
            yield event, json.loads(data) if data else None
            event, data = "", ""


async def multipart_payloads(response: httpx.Response) -> AsyncIterator[Any]:
    """The `payload`s of Apollo's multipart subscription parts (heartbeats `{}` left out)."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while True:
            start = buffer.find("\r\n\r\n")
            end = buffer.find("\r\n--graphql", start + 1) if start >= 0 else -1
            if start < 0 or end < 0:
                break
            body, buffer = buffer[start + 4 : end], buffer[end + len("\r\n--graphql") :]
            part = json.loads(body)
            if part:
                yield part["payload"]


async def next_within(items: AsyncIterator[T], what: str, wait: float = WAIT) -> T:
    """The next item of a stream, or a failure naming `what` after `wait` seconds."""
    try:
        return await asyncio.wait_for(anext(items), wait)
    except TimeoutError:
        raise AssertionError(f"no {what} within {wait:g} s") from None


async def all_within(items: AsyncIterator[T], what: str, wait: float = WAIT) -> list[T]:
    """Every item of a stream that ends, or a failure naming `what` after `wait` seconds."""
    try:
        async with asyncio.timeout(wait):
            return [item async for item in items]
    except TimeoutError:
        raise AssertionError(f"{what} did not end within {wait:g} s") from None


def cursor_of(payload: dict[str, Any]) -> int:
    assert payload.get("data"), payload
    return decode_cursor(payload["data"]["sessionMetrics"]["cursor"])


async def nothing_open(server: Server) -> None:
    """The subscription ended on the server: no open slot counted, no broker subscriber."""

    def closed() -> bool:
        broker: Any = server.resources.broker
        return not server.resources.limiter.connections._open and not broker.fanout.topics

    await until(closed, "the server to end the subscription")


async def test_sse_subscription_resumes_then_goes_live(live: Server, factory: Factory) -> None:
    session = await live_session(factory)
    token = token_for("athlete", session.athlete_id)
    sid = to_global_id("TrainingSession", session.id)
    async with httpx.AsyncClient(timeout=15) as http:
        await record(http, live, session.id, 3, token)
        body = {"query": METRICS, "variables": {"id": sid, "after": encode_cursor(1)}}
        headers = {**SSE, "authorization": f"Bearer {token}"}
        async with http.stream(
            "POST", f"{live.url}/graphql", json=body, headers=headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
            seen = []
            for _ in range(2):  # what it missed after cursor 1, from storage
                kind, payload = await next_within(events, "stored sample")
                assert kind == "next", (kind, payload)
                seen.append(cursor_of(payload))
            assert seen == [2, 3]
            assert live.resources.limiter.connections._open  # counted while open
            await record(http, live, session.id, 2, token)
            for _ in range(2):  # then live
                kind, payload = await next_within(events, "live sample")
                seen.append(cursor_of(payload))
            assert seen == [2, 3, 4, 5]
        # the client left mid-stream
        await nothing_open(live)


async def test_sse_runs_a_query_and_completes(live: Server) -> None:
    async with httpx.AsyncClient(timeout=15) as http:
        body = {"query": "{ __typename }"}
        async with http.stream("POST", f"{live.url}/graphql", json=body, headers=SSE) as response:
            got = await all_within(sse_events(response), "the query's stream")
    assert got == [("next", {"data": {"__typename": "Query"}}), ("complete", None)]


async def test_sse_refuses_what_websocket_refuses(live: Server, factory: Factory) -> None:
    session = await live_session(factory)
    stranger = token_for("athlete", session.athlete_id + 1000)
    sid = to_global_id("TrainingSession", session.id)
    async with httpx.AsyncClient(timeout=15) as http:
        body = {"query": METRICS, "variables": {"id": sid}}
        headers = {**SSE, "authorization": f"Bearer {stranger}"}
        async with http.stream(
            "POST", f"{live.url}/graphql", json=body, headers=headers
        ) as response:
            got = await all_within(sse_events(response), "the refused stream")
        assert got[0][0] == "next" and got[-1] == ("complete", None)
        assert got[0][1]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        bad = await http.post(
            f"{live.url}/graphql", json=body, headers={**SSE, "authorization": "Bearer nope"}
        )
        assert bad.status_code == 401
        assert bad.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    await nothing_open(live)


async def test_an_expired_token_ends_the_stream(live: Server, factory: Factory) -> None:
    session = await live_session(factory)
    token = token_for("athlete", session.athlete_id, ttl=2)
    sid = to_global_id("TrainingSession", session.id)
    async with httpx.AsyncClient(timeout=15) as http:
        body = {"query": METRICS, "variables": {"id": sid}}
        headers = {**SSE, "authorization": f"Bearer {token}"}
        async with http.stream(
            "POST", f"{live.url}/graphql", json=body, headers=headers
        ) as response:
            got = await all_within(sse_events(response), "the stream of an expiring token")
    assert got[0][1]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", got
    assert got[-1] == ("complete", None)
    await nothing_open(live)


async def test_open_subscriptions_per_client_are_capped(live: Server, factory: Factory) -> None:
    session = await live_session(factory)
    token = token_for("athlete", session.athlete_id)
    sid = to_global_id("TrainingSession", session.id)
    body = {"query": METRICS, "variables": {"id": sid}}
    headers = {**SSE, "authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=15) as http:
        url = f"{live.url}/graphql"
        async with (
            http.stream("POST", url, json=body, headers=headers),
            http.stream("POST", url, json=body, headers=headers),
        ):
            await until(
                lambda: sum(live.resources.limiter.connections._open.values()) == 2,
                "two open subscriptions",
            )
            third = await http.post(url, json=body, headers=headers)
            assert third.status_code == 429
            assert third.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    await nothing_open(live)


async def test_multipart_subscription_resumes_then_goes_live(
    live: Server, factory: Factory
) -> None:
    session = await live_session(factory)
    token = token_for("coach", session.coach_id)
    sid = to_global_id("TrainingSession", session.id)
    async with httpx.AsyncClient(timeout=15) as http:
        await record(http, live, session.id, 2, token)
        body = {"query": METRICS, "variables": {"id": sid, "after": encode_cursor(0)}}
        headers = {**MULTIPART, "authorization": f"Bearer {token}"}
        async with http.stream(
            "POST", f"{live.url}/graphql", json=body, headers=headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("multipart/mixed")
            assert "subscriptionSpec=1.0" in response.headers["content-type"]
            payloads = multipart_payloads(response)
            seen = [cursor_of(await next_within(payloads, "stored sample")) for _ in range(2)]
            await record(http, live, session.id, 1, token)
            seen.append(cursor_of(await next_within(payloads, "live sample")))
        assert seen == [1, 2, 3]
    await nothing_open(live)


async def test_a_stream_that_stalls_fails_the_wait_instead_of_hanging(
    live: Server, factory: Factory
) -> None:
    """The hang this file once had: a multipart subscription with nothing to send, whose
    heartbeats keep httpx's read timeout from ever firing. The bounded read fails in time."""
    session = await live_session(factory)
    token = token_for("athlete", session.athlete_id)
    body = {"query": METRICS, "variables": {"id": to_global_id("TrainingSession", session.id)}}
    headers = {**MULTIPART, "authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(timeout=WAIT) as http,
        http.stream("POST", f"{live.url}/graphql", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        began = time.monotonic()
        with pytest.raises(AssertionError, match="no live sample within 1 s"):
            await next_within(multipart_payloads(response), "live sample", wait=1)
        assert time.monotonic() - began < 5
    await nothing_open(live)


async def test_legacy_graphql_ws_runs_queries_and_mutations(live: Server, admin_token: str) -> None:
    client = await WSClient.connect(live.url, admin_token, protocol="graphql-ws")
    assert (await client.ack())["type"] == "connection_ack"
    op = await client.subscribe("{ __typename }")
    assert await client.recv() == {
        "type": "data",
        "id": op,
        "payload": {"data": {"__typename": "Query"}},
    }
    assert await client.recv() == {"type": "complete", "id": op}
    create = 'mutation { createSkill(input: {slug: "over-ws", name: "Over WS", sport: "running"}) { __typename } }'
    op = await client.subscribe(create)
    message = await client.recv()
    assert message["payload"] == {"data": {"createSkill": {"__typename": "Skill"}}}, message
    assert await client.recv() == {"type": "complete", "id": op}
    op = await client.subscribe("{ nope }")
    message = await client.recv()
    assert message["type"] == "error" and message["payload"]["extensions"]["code"], message
    await client.close()


async def test_trusted_documents_hold_over_websocket_too(
    settings: Settings, tmp_path: Path, db: Database, admin_token: str
) -> None:
    listed = "query Listed { __typename }"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"listed-1": listed}))  # Relay's form: ids to documents
    changed = settings.with_(data_dir=tmp_path / "data", trusted_documents=manifest)
    async with serve(create_app(changed, start_projector=False)) as url:
        for protocol in ("graphql-transport-ws", "graphql-ws"):
            client = await WSClient.connect(url, admin_token, protocol=protocol)
            assert (await client.ack())["type"] == "connection_ack"
            await client.subscribe("{ __typename }")
            refused = await client.recv()
            assert refused["type"] == "error", refused
            errors = refused["payload"] if protocol == "graphql-ws" else refused["payload"][0]
            assert errors["extensions"]["code"] == "OPERATION_NOT_TRUSTED", refused
            op = str(int(await client.subscribe(listed)))
            message = await client.recv()
            assert message["id"] == op and message["payload"]["data"] == {"__typename": "Query"}
            await client.close()


async def test_the_persisted_store_is_shared_through_redis(redis_url: str) -> None:
    async with asyncio.timeout(WAIT):  # every Redis call, which has no timeout of its own
        await _share_through_redis(redis_url)


async def _share_through_redis(redis_url: str) -> None:
    first, second = DocumentStore(2, _redis(redis_url)), DocumentStore(2, _redis(redis_url))
    await first._redis.delete("coachgraph:apq:docs", "coachgraph:apq:used")
    try:
        digests = [f"{n:064x}" for n in range(3)]
        await first.put(digests[0], "{ a: __typename }")
        assert await second.get(digests[0]) == "{ a: __typename }"
        await first.put(digests[1], "{ b: __typename }")
        await first.put(digests[2], "{ c: __typename }")  # past the bound: the oldest goes
        fresh = DocumentStore(2, _redis(redis_url))
        assert await fresh.get(digests[0]) is None
        assert await fresh.get(digests[2]) == "{ c: __typename }"
        await fresh.close()
    finally:
        await first.close()
        await second.close()


def _redis(url: str) -> Any:
    import redis.asyncio as aioredis

    return aioredis.from_url(url)
