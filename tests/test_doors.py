"""What the HTTP door accepts: bodies bounded by the bytes read, bounded headers and JSON
nesting, tokens with numeric times, and every refusal as coded JSON (issue 11)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import jwt
import pytest

from coachgraph.api import doors
from coachgraph.api.doors import Refusal
from coachgraph.api.websocket import _TokenClock
from coachgraph.config import Limits
from coachgraph.resolvers.policy import Viewer
from tests.conftest import SECRET


def assert_refused(response: httpx.Response, status: int, code: str = "BAD_USER_INPUT") -> str:
    """A coded JSON refusal in GraphQL's shape; its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["data"] is None, body
    assert body["errors"][0]["extensions"]["code"] == code, body
    message: str = body["errors"][0]["message"]
    return message


async def test_a_chunked_body_is_limited_by_the_bytes_read(client: httpx.AsyncClient) -> None:
    pulled = 0
    piece = b" " * 65_536

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        nonlocal pulled
        yield b'{"query": "{ __typename }", "pad": "'
        for _ in range(80):  # 5 MB, accepted whole before
            pulled += len(piece)
            yield piece
        yield b'"}'

    response = await client.post(
        "/graphql", content=body(), headers={"content-type": "application/json"}
    )
    assert_refused(response, 413)
    assert pulled <= Limits().max_body_bytes + len(piece)


async def test_a_chunked_body_under_the_limit_is_served(client: httpx.AsyncClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"query": '
        yield b'"{ __typename }"}'

    response = await client.post(
        "/graphql", content=body(), headers={"content-type": "application/json"}
    )
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer " + "a" * 1_000_000},  # one header far too large
        {"X-Filler": "b" * 9_000},
        {f"X-Filler-{i}": "c" * 7_000 for i in range(6)},  # each fine, too many together
    ],
)
async def test_oversized_headers_are_refused(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert_refused(response, 431)


@pytest.mark.parametrize(
    "path", ["/healthz", "/media/files/x", "/ingest/sessions/x/samples", "/nowhere"]
)
async def test_every_route_bounds_its_headers(client: httpx.AsyncClient, path: str) -> None:
    """One middleware bounds headers before any route reads them, whatever the route."""
    response = await client.get(path, headers={"X-Filler": "b" * 9_000})
    assert response.status_code == 431, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "BAD_USER_INPUT"


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


@pytest.mark.parametrize("depth", [5_000, 65])
async def test_deeply_nested_variables_are_bad_user_input(
    client: httpx.AsyncClient, depth: int
) -> None:
    # json.dumps recurses too: build the text by hand
    text = '{"query": "{ __typename }", "variables": {"x": ' + "[" * depth + "]" * depth + "}}"
    response = await client.post(
        "/graphql", content=text.encode(), headers={"content-type": "application/json"}
    )
    assert "nests deeper" in assert_refused(response, 400)


async def test_moderately_nested_variables_are_served(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ __typename }", "variables": {"x": nested(20)}}
    )
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_brackets_inside_strings_do_not_count_as_nesting(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "{ __typename }", "variables": {"x": "[{" * 5_000, "y": '\\"[['}},
    )
    assert response.json() == {"data": {"__typename": "Query"}}


def test_json_depth_is_linear_and_ignores_strings() -> None:
    assert doors.json_depth(b"1") == 0
    assert doors.json_depth(b'{"a": [1, {"b": "]]]"}], "c": "\\"[["}') == 3
    assert doors.json_depth(b"[" * 100_000 + b"]" * 100_000) == 100_000


@pytest.mark.parametrize(
    "body",
    [
        b'"x"',
        b"12",
        b"null",
        b"true",
        b"[1]",
        b'["x", 2]',
        b"{",
        b'{"query": "{ __typename }"',
        b'{"query": "\xff\xfe"}',  # not UTF-8
        b"\xff",
        b'{"query": 12}',
        b'{"query": "{ __typename }", "variables": [1]}',
        b"{}",
    ],
)
async def test_bad_bodies_are_coded_json(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert_refused(response, 400)


async def test_strawberrys_own_refusals_are_coded_json(client: httpx.AsyncClient) -> None:
    assert_refused(
        await client.post(
            "/graphql", content=b"{ __typename }", headers={"content-type": "text/plain"}
        ),
        400,
    )
    assert_refused(await client.put("/graphql", json={"query": "{ __typename }"}), 405)
    assert_refused(
        await client.get("/graphql", params={"query": "{ __typename }", "variables": "[1"}), 400
    )


def assert_route_refused(response: httpx.Response, status: int, code: str) -> None:
    """A coded JSON refusal in the routes' shape ({"error": {message, code}})."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert response.json()["error"]["code"] == code, response.text


async def test_starlettes_own_refusals_are_coded_json(client: httpx.AsyncClient) -> None:
    # its defaults were text/plain "Not Found" and "Method Not Allowed"
    assert_route_refused(await client.get("/nowhere"), 404, "NOT_FOUND")
    assert_route_refused(await client.post("/healthz"), 405, "BAD_USER_INPUT")
    response = await client.delete("/media/files/some/key")
    assert_route_refused(response, 405, "BAD_USER_INPUT")
    assert "GET" in response.headers["allow"]
    assert_refused(await client.get("/graphql/nowhere"), 404, "NOT_FOUND")


SUBSCRIPTION = 'subscription { sessionUpdates(sessionId: "VHJhaW5pbmdTZXNzaW9uOjE=") { id } }'


async def test_a_subscription_over_http_is_refused_with_a_code(client: httpx.AsyncClient) -> None:
    for response in (
        await client.post("/graphql", json={"query": SUBSCRIPTION}),
        await client.get("/graphql", params={"query": SUBSCRIPTION}),
    ):
        assert "WebSocket" in assert_refused(response, 400)


def forged(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "ADMIN", "exp": str(int(time.time()) + 600)},  # PyJWT takes numeric strings
        {"role": "ADMIN", "exp": int(time.time()) + 600, "iat": str(int(time.time()))},
        {"role": "ADMIN", "exp": int(time.time()) + 600, "nbf": "0"},
        {"role": "ADMIN", "exp": True},
        {"role": "ADMIN", "exp": int(time.time()) + 600, "sub": 12},
        {"role": ["ADMIN"], "exp": int(time.time()) + 600},
    ],
)
async def test_token_times_must_be_numbers(
    client: httpx.AsyncClient, claims: dict[str, Any]
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { role } }"},
        headers={"Authorization": f"Bearer {forged(claims)}"},
    )
    assert_refused(response, 401, "UNAUTHENTICATED")


async def test_a_token_with_numeric_times_is_accepted(client: httpx.AsyncClient) -> None:
    now = time.time()
    token = forged({"role": "ADMIN", "exp": now + 600.5, "iat": int(now), "nbf": now - 1})
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { role } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.json() == {"data": {"viewer": {"role": "ADMIN"}}}


def receiver(*pieces: tuple[float, bytes]) -> Any:
    """A fake ASGI `receive`: each piece after its delay; the last ends the body."""
    queue = list(pieces)

    async def receive() -> dict[str, Any]:
        delay, body = queue.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": body, "more_body": bool(queue)}

    return receive


async def test_the_body_reader_refuses_a_stall_and_a_trickle() -> None:
    limits = Limits(body_read_timeout_ms=200, body_min_bytes_per_second=100)
    whole = [c async for c in doors.body_chunks(receiver((0, b"a"), (0.05, b"b")), limits)]
    assert whole == [b"a", b"b"]
    with pytest.raises(Refusal) as stalled:
        async for _ in doors.body_chunks(receiver((0, b"a"), (30, b"b")), limits):
            pass
    assert stalled.value.status == 408
    # every piece within the read timeout, but a byte every 0.1 s is below 100 bytes/s
    trickle = receiver(*[(0.1, b"x")] * 100)
    with pytest.raises(Refusal) as slow:
        async for _ in doors.body_chunks(trickle, limits):
            pass
    assert slow.value.status == 408
    with pytest.raises(Refusal) as large:
        await doors.read_body(receiver((0, b"a" * 10), (0, b"a")), limits, max_bytes=10)
    assert large.value.status == 413


def test_the_new_limits_can_be_set_from_the_environment() -> None:
    from coachgraph.config import _limits

    limits = _limits(
        {"COACHGRAPH_LIMIT_MAX_JSON_DEPTH": "7", "COACHGRAPH_LIMIT_BODY_READ_TIMEOUT_MS": "5"}
    )
    assert (limits.max_json_depth, limits.body_read_timeout_ms) == (7, 5)


async def test_a_body_of_many_small_json_values_parses_quickly(client: httpx.AsyncClient) -> None:
    # brackets in the hundreds of thousands: the depth scan stays linear
    text = json.dumps({"query": "{ __typename }", "variables": {"x": [[1]] * 100_000}})
    response = await client.post(
        "/graphql", content=text.encode(), headers={"content-type": "application/json"}
    )
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_the_token_clock_is_cancelled_and_waited_for() -> None:
    """A WebSocket's expiry timer ends with its connection: no task outlives it."""
    rang: list[bool] = []

    async def expire() -> None:
        rang.append(True)

    clock = _TokenClock(expire)
    context: Any = SimpleNamespace(viewer=Viewer(expires_at=time.time() + 3_600))
    clock.start(True, context)
    task = clock.task
    assert task is not None
    await clock.stop()
    assert task.cancelled() and clock.task is None and not rang
