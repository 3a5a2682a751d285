"""The doors of a real server: slow bodies hold no database connection and are refused, NDJSON
nesting is refused, and WebSockets live no longer than their token, with coded errors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
import websockets

from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.ids import to_global_id
from coachgraph.stores.db import Database
from tests.conftest import token_for
from tests.factories import Factory
from tests.live.conftest import WSClient, live_session, samples
from tests.live.test_ingest import post_ndjson
from tests.servers import serve

READ_TIMEOUT_MS = 3_000  # long beside a query's few milliseconds: the order of answers is sure


@pytest.fixture(scope="module")
async def door_server(settings: Settings, tmp_root: Path) -> AsyncIterator[str]:
    """The app on a real port with a pool of three connections and a short body timeout."""
    limits = dataclasses.replace(
        settings.limits,
        body_read_timeout_ms=READ_TIMEOUT_MS,
        body_min_bytes_per_second=1,
        ndjson_copy_chunk=2,
        max_header_bytes_each=2_048,
    )
    app = create_app(
        settings.with_(limits=limits, db_pool_min=1, db_pool_max=3, data_dir=tmp_root / "doors"),
        start_projector=False,
    )
    async with serve(app) as url:
        yield url


@pytest.fixture
async def door(door_server: str, db: Database) -> str:
    return door_server


class Upload:
    """A chunked NDJSON upload over a raw socket that sends what it is told, then waits."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str, session_id: int, token: str, first: bytes) -> Upload:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        path = f"/ingest/sessions/{to_global_id('TrainingSession', session_id)}/samples"
        writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/x-ndjson\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
            + f"{len(first):x}\r\n".encode()
            + first
            + b"\r\n"
        )
        await writer.drain()
        return cls(reader, writer)

    async def answer(self) -> tuple[int, dict[str, Any]]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(": ", 1) for line in lines[1:] if line)
        length = int({k.lower(): v for k, v in headers.items()}["content-length"])
        body = json.loads(await self.reader.readexactly(length))
        assert headers.get("content-type", "").startswith("application/json"), headers
        return status, body

    def close(self) -> None:
        self.writer.close()


def ndjson(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


async def test_slow_uploads_hold_no_connection_and_are_refused(door: str, factory: Factory) -> None:
    session = await live_session(factory)
    token = token_for("athlete", session.athlete_id)
    # one line each: the first chunk (two lines here) is never complete
    uploads = [await Upload.open(door, session.id, token, ndjson(samples(1))) for _ in range(10)]
    order: list[str] = []

    async def refused(upload: Upload) -> tuple[int, dict[str, Any]]:
        answer = await upload.answer()
        order.append("upload")
        return answer

    waiting = [asyncio.create_task(refused(u)) for u in uploads]
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                f"{door}/graphql", json={"query": "{ coaches { totalCount } }"}
            )
        order.append("query")
        assert response.json() == {"data": {"coaches": {"totalCount": 1}}}
        answers = await asyncio.gather(*waiting)
    finally:
        for upload in uploads:
            upload.close()
    assert order[0] == "query"  # answered while all ten uploads were still open
    for status, body in answers:
        assert status == 408 and body["error"]["code"] == "BAD_USER_INPUT", body
    assert await factory.count("metric_samples") == 0


async def test_a_stall_after_the_first_chunk_rolls_back_and_is_refused(
    door: str, factory: Factory
) -> None:
    session = await live_session(factory)
    token = token_for("athlete", session.athlete_id)
    # two lines make the first chunk (copied in the open transaction), the third never ends
    upload = await Upload.open(door, session.id, token, ndjson(samples(3))[:-20])
    try:
        status, body = await upload.answer()
    finally:
        upload.close()
    assert status == 408 and body["error"]["code"] == "BAD_USER_INPUT", body
    assert await factory.count("metric_samples") == 0
    async with httpx.AsyncClient(timeout=30) as http:  # the connection went back to the pool
        for _ in range(5):
            response = await http.post(f"{door}/graphql", json={"query": "{ __typename }"})
            assert response.status_code == 200


async def test_a_slow_graphql_body_is_refused(door: str) -> None:
    parts = urlsplit(door)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"que\r\n'
    )
    await writer.drain()
    try:
        status, body = await Upload(reader, writer).answer()
    finally:
        writer.close()
    assert status == 408 and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


@pytest.mark.parametrize("depth", [5_000, 900])
async def test_a_deeply_nested_ndjson_line_is_a_bad_sample(
    client: httpx.AsyncClient, factory: Factory, depth: int
) -> None:
    session = await live_session(factory)
    body = ndjson(samples(2)) + b"[" * depth + b"\n"
    response = await post_ndjson(client, session.id, body, token_for("athlete", session.athlete_id))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    assert response.json()["error"]["line"] == 3
    assert await factory.count("metric_samples") == 0


async def test_an_ndjson_body_sent_whole_is_still_accepted(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    session = await live_session(factory)
    response = await post_ndjson(
        client, session.id, ndjson(samples(25)), token_for("athlete", session.athlete_id)
    )
    assert response.json()["accepted"] == 25, response.text


QUERY = "{ __typename }"


async def closed_code(client: WSClient, wait: float = 15) -> int:
    """Read until the server closes the connection; its close code."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            message = await client.recv(wait=wait)
            assert message["type"] not in ("next", "data"), message  # nothing runs expired
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd.code


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_an_idle_connection_closes_when_its_token_expires(door: str, protocol: str) -> None:
    client = await WSClient.connect(door, token_for("admin", ttl=2), protocol=protocol)
    assert (await client.ack())["type"] == "connection_ack"
    if protocol == "graphql-transport-ws":  # a query first (legacy graphql-ws runs none yet)
        await client.subscribe(QUERY)
        message = await client.recv()
        assert message["type"] == "next" and message["payload"]["data"] == {"__typename": "Query"}
        assert (await client.recv())["type"] == "complete"
    assert await closed_code(client) == 4401


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_an_operation_after_expiry_is_refused(door: str, protocol: str) -> None:
    token = token_for("admin", ttl=2)
    client = await WSClient.connect(door, token, protocol=protocol)
    assert (await client.ack())["type"] == "connection_ack"
    await asyncio.sleep(max(0.0, _exp(token) - time.time()) + 0.5)
    try:
        await client.subscribe(QUERY)
        code = await closed_code(client)
    except websockets.ConnectionClosed:  # closed before the operation could even be sent
        code = client.ws.close_code
    assert code == 4401


def _exp(token: str) -> float:
    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
@pytest.mark.parametrize(
    "query",
    ["{ __typename", "query A { __typename }", "{ noSuchField }"],
)
async def test_errors_over_websocket_carry_a_code(door: str, protocol: str, query: str) -> None:
    client = await WSClient.connect(door, token_for("admin"), protocol=protocol)
    await client.ack()
    op = str(1)
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    operation_name = "B" if query.startswith("query A") else None  # an unknown operation name
    await client.send(
        {"id": op, "type": kind, "payload": {"query": query, "operationName": operation_name}}
    )
    message = await client.recv()
    assert message["type"] == "error", message
    payload = message["payload"]
    errors = payload if isinstance(payload, list) else [payload]
    assert errors and all(e["extensions"]["code"] == "BAD_USER_INPUT" for e in errors), message
    await client.close()


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_the_subscription_limit_is_coded(door: str, factory: Factory, protocol: str) -> None:
    session = await live_session(factory)
    client = await WSClient.connect(door, token_for("admin"), protocol=protocol)
    await client.ack()
    updates = "subscription($id: ID!) { sessionUpdates(sessionId: $id) { id } }"
    variables = {"id": to_global_id("TrainingSession", session.id)}
    for _ in range(100):  # Strawberry's default cap per connection
        await client.subscribe(updates, variables)
    await client.subscribe(updates, variables)
    message = await client.recv()
    assert message["type"] == "error" and message["id"] == "101", message
    payload = message["payload"]
    error = payload[0] if isinstance(payload, list) else payload
    assert error["extensions"]["code"] == "RATE_LIMITED", message
    await client.close()


async def test_an_oversized_handshake_header_is_refused(door: str) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            door.replace("http", "ws", 1) + "/graphql",
            subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
            additional_headers={"X-Filler": "x" * 4_000},
        )
    response = refused.value.response
    assert response.status_code == 431
    assert json.loads(response.body)["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
