"""Rate limits on every door (issue 11): HTTP, ingest, media, refusals, WebSocket handshakes,
connections and operations; client identity (token subject, token digest, trusted proxies);
429 with Retry-After; one budget across replicas through Redis.

Each limit under test is small and per minute. A sliding window lets at most one extra request
through when a burst straddles a minute boundary, so the tests send two past the limit and
expect the last one refused, never timing anything."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from asgi_lifespan import LifespanManager
from limits.aio.storage import MemoryStorage
from websockets.exceptions import ConnectionClosed, InvalidStatus

from coachgraph import cli
from coachgraph.api.ratelimit import client_address, client_key
from coachgraph.app import create_app
from coachgraph.config import Limits, Settings, SettingsError
from coachgraph.limiter import Door, Limiter, door_rates
from coachgraph.runtime import Resources
from tests.conftest import SECRET, token_for
from tests.live.conftest import WSClient
from tests.servers import redis_server, refusing_port, serve, until

QUERY = {"query": "{ __typename }"}


def small(**numbers: int) -> Limits:
    return dataclasses.replace(Limits(), **numbers)


@contextlib.asynccontextmanager
async def limited(resources: Resources, **numbers: int) -> AsyncIterator[Limiter]:
    """The app's limiter swapped for a fresh in-process one with these numbers."""
    original = resources.limiter
    limiter = Limiter(small(**numbers), MemoryStorage())
    resources.limiter = limiter
    try:
        yield limiter
    finally:
        resources.limiter = original
        await limiter.close()


@contextlib.asynccontextmanager
async def trusting(resources: Resources, *networks: str) -> AsyncIterator[None]:
    original = resources.settings
    resources.settings = original.with_(
        trusted_proxies=tuple(ipaddress.ip_network(n) for n in networks)
    )
    try:
        yield
    finally:
        resources.settings = original


def from_peer(app: Any, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def assert_limited(response: httpx.Response, shape: str = "graphql") -> None:
    """429, a whole positive Retry-After, and RATE_LIMITED in the door's error shape."""
    assert response.status_code == 429, response.text
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    body = response.json()
    if shape == "graphql":
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    else:
        assert body["error"]["code"] == "RATE_LIMITED" and body["error"]["message"]


# --- HTTP doors, over the shared app ----------------------------------------------------------


async def test_graphql_over_http_answers_429_with_retry_after(
    client: httpx.AsyncClient, app_resources: tuple[Any, Resources]
) -> None:
    async with limited(app_resources[1], rate_limit_per_minute=2):
        responses = [await client.post("/graphql", json=QUERY) for _ in range(4)]
    assert [r.status_code for r in responses[:2]] == [200, 200]
    assert_limited(responses[-1])


@pytest.mark.parametrize("token", [token_for("coach", 7), "forged"])
async def test_a_request_token_is_decoded_once(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """The rate limiter and the gate share one decoding of the Authorization header."""
    from coachgraph.api import auth

    decodings: list[str | None] = []
    real = auth.viewer_from_header

    def counted(secret: str, header: str | None) -> Any:
        decodings.append(header)
        return real(secret, header)

    monkeypatch.setattr(auth, "viewer_from_header", counted)
    response = await client.post(
        "/graphql", json=QUERY, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == (200 if token != "forged" else 401), response.text
    assert decodings == [f"Bearer {token}"]


async def test_a_verified_token_is_remembered_until_it_expires(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's token is verified once, then found; past its `exp` it is refused (401) as a
    freshly verified one would be; a token changed by one character is verified anew."""
    from coachgraph.api import auth

    verified: list[str] = []
    real = auth._verified

    def counted(secret: str, token: str) -> Any:
        verified.append(token)
        return real(secret, token)

    monkeypatch.setattr(auth, "_verified", counted)
    token = token_for("coach", 7, ttl=60)
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(3):
        response = await client.post("/graphql", json=QUERY, headers=headers)
        assert response.status_code == 200, response.text
    assert verified == [token]
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    response = await client.post(
        "/graphql", json=QUERY, headers={"Authorization": f"Bearer {tampered}"}
    )
    assert response.status_code == 401, response.text
    assert verified == [token, tampered]
    later = time.time() + 61  # as auth reads the clock (time.time), a minute later
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: later))
    response = await client.post("/graphql", json=QUERY, headers=headers)
    assert response.status_code == 401, response.text
    assert "expired" in response.json()["errors"][0]["message"]
    assert (SECRET, token) not in auth._VERIFIED


async def test_refusals_are_counted(
    client: httpx.AsyncClient, app_resources: tuple[Any, Resources]
) -> None:
    """A stream of bad tokens (401s) runs into 429 like any other request."""
    async with limited(app_resources[1], rate_limit_per_minute=3):
        responses = [
            await client.post(
                "/graphql", json=QUERY, headers={"Authorization": f"Bearer forged-{i}"}
            )
            for i in range(5)
        ]
    assert [r.status_code for r in responses[:3]] == [401, 401, 401]
    assert_limited(responses[-1])


async def test_ingest_is_limited(
    client: httpx.AsyncClient, app_resources: tuple[Any, Resources]
) -> None:
    async with limited(app_resources[1], ingest_rate_per_minute=2):
        responses = [
            await client.post(
                "/ingest/sessions/nope/samples",
                content=b'{"kind": "HEART_RATE", "at": "2026-01-01T00:00:00Z", "value": 60}\n',
                headers={"Authorization": f"Bearer {token_for('admin')}"},
            )
            for _ in range(4)
        ]
        graphql = await client.post("/graphql", json=QUERY)
    assert all(r.status_code != 429 for r in responses[:2])
    assert_limited(responses[-1], shape="route")
    assert graphql.status_code == 200  # its own budget


async def test_media_routes_are_limited(
    client: httpx.AsyncClient, app_resources: tuple[Any, Resources]
) -> None:
    async with limited(app_resources[1], media_rate_per_minute=2):
        responses = [
            await client.get("/media/files/some/key", params={"sig": "forged", "exp": "1"})
            for _ in range(4)
        ]
    assert [r.status_code for r in responses[:2]] == [403, 403]
    assert_limited(responses[-1], shape="route")


async def test_health_is_not_limited(
    client: httpx.AsyncClient, app_resources: tuple[Any, Resources]
) -> None:
    async with limited(app_resources[1], rate_limit_per_minute=1):
        codes = [(await client.get("/healthz")).status_code for _ in range(3)]
    assert codes == [200, 200, 200]


async def test_subjectless_admin_tokens_have_their_own_budgets(
    client: httpx.AsyncClient, app_resources: tuple[Any, Resources]
) -> None:
    first, second = token_for("admin", ttl=600), token_for("admin", ttl=601)
    assert first != second

    async def post(token: str) -> httpx.Response:
        return await client.post(
            "/graphql", json=QUERY, headers={"Authorization": f"Bearer {token}"}
        )

    async with limited(app_resources[1], rate_limit_per_minute=2):
        spent = [await post(first) for _ in range(4)]
        other = await post(second)
        anonymous = await client.post("/graphql", json=QUERY)
    assert_limited(spent[-1])
    assert other.status_code == 200 and anonymous.status_code == 200


async def test_subjects_are_clients_whatever_the_address(
    app_resources: tuple[Any, Resources],
) -> None:
    """A coach's budget follows its token, not the address it comes from."""
    app, resources = app_resources
    headers = {"Authorization": f"Bearer {token_for('coach', 1)}"}
    async with limited(resources, rate_limit_per_minute=2):
        responses = []
        for i in range(4):
            async with from_peer(app, f"198.51.100.{i + 1}") as c:
                responses.append(await c.post("/graphql", json=QUERY, headers=headers))
    assert responses[0].status_code == 200
    assert_limited(responses[-1])


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(
    app_resources: tuple[Any, Resources],
) -> None:
    app, resources = app_resources
    async with limited(resources, rate_limit_per_minute=2), from_peer(app, "203.0.113.9") as c:
        responses = [
            await c.post("/graphql", json=QUERY, headers={"X-Forwarded-For": f"192.0.2.{i}"})
            for i in range(4)
        ]
    assert [r.status_code for r in responses[:2]] == [200, 200]
    assert_limited(responses[-1])


async def test_forwarded_for_is_believed_from_a_trusted_proxy(
    app_resources: tuple[Any, Resources],
) -> None:
    app, resources = app_resources
    async with (
        limited(resources, rate_limit_per_minute=2),
        trusting(resources, "10.0.0.0/8"),
        from_peer(app, "10.1.2.3") as proxy,
    ):

        async def post(forwarded: str) -> httpx.Response:
            return await proxy.post("/graphql", json=QUERY, headers={"X-Forwarded-For": forwarded})

        # the rightmost untrusted hop is the client: what it claims to its left does not count
        spent = [await post(f"172.16.{i}.1, 192.0.2.7, 10.9.9.9") for i in range(4)]
        someone_else = await post("192.0.2.8")
        the_proxy_itself = await proxy.post("/graphql", json=QUERY)
    assert_limited(spent[-1])
    assert someone_else.status_code == 200 and the_proxy_itself.status_code == 200


def scope_of(peer: str, *forwarded: str) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return {"client": (peer, 1), "headers": headers}


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", ["192.0.2.1"], "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.1", [], "10.0.0.1"),  # trusted peer, no header: the peer
        ("10.0.0.1", ["6.6.6.6, 192.0.2.1"], "192.0.2.1"),
        ("10.0.0.1", ["6.6.6.6", "192.0.2.1, 10.0.0.2"], "192.0.2.1"),  # two header lines
        ("10.0.0.1", ["192.0.2.1:5123"], "192.0.2.1"),  # with a port
        ("10.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.0.0.1", ["192.0.2.1, not-an-address, 10.0.0.3"], "10.0.0.3"),
        ("10.0.0.1", ["10.0.0.4, 10.0.0.3"], "10.0.0.4"),  # every hop trusted: the first
        ("::ffff:10.0.0.1", ["192.0.2.1"], "192.0.2.1"),  # IPv4-mapped peer
    ],
)
def test_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    trusted = (ipaddress.ip_network("10.0.0.0/8"),)
    hops = Limits().max_forwarded_hops
    assert client_address(scope_of(peer, *forwarded), trusted, max_hops=hops) == expected


def test_client_address_looks_at_the_last_max_hops_only() -> None:
    trusted = (ipaddress.ip_network("10.0.0.0/8"),)
    scope = scope_of("10.0.0.1", "192.0.2.1, 10.0.0.2")
    assert client_address(scope, trusted, max_hops=2) == "192.0.2.1"
    assert client_address(scope, trusted, max_hops=1) == "10.0.0.2"


def test_client_key() -> None:
    admin = token_for("admin")
    coach = f"Bearer {token_for('coach', 7)}"

    def key(authorization: str | None, *, max_token_chars: int = Limits().max_token_chars) -> str:
        return client_key(SECRET, authorization, "1.2.3.4", max_token_chars=max_token_chars)

    assert key(coach).startswith("sub:")
    assert key(f"Bearer {admin}").startswith("token:")
    assert key("Bearer forged") == "ip:1.2.3.4"
    assert key("Bearer " + "x" * 100_000) == "ip:1.2.3.4"
    assert key(None) == "ip:1.2.3.4"
    assert key(coach, max_token_chars=len(coach)).startswith("sub:")
    assert key(coach, max_token_chars=len(coach) - 1) == "ip:1.2.3.4"  # not decoded


def test_trusted_proxies_setting() -> None:
    env = {"COACHGRAPH_TRUSTED_PROXIES": " 10.0.0.0/8, 127.0.0.1,::1 "}
    assert [str(n) for n in Settings.from_env(env).trusted_proxies] == [
        "10.0.0.0/8",
        "127.0.0.1/32",
        "::1/128",
    ]
    assert Settings.from_env({}).trusted_proxies == ()
    for bad in ("proxy.internal", "10.0.0.1/8", "300.1.1.1"):
        with pytest.raises(SettingsError, match="COACHGRAPH_TRUSTED_PROXIES"):
            Settings.from_env({"COACHGRAPH_TRUSTED_PROXIES": bad})


def test_each_door_has_a_burst_and_a_rate() -> None:
    rates = door_rates(small(rate_limit_burst=5, rate_limit_per_minute=50))
    assert [(item.amount, item.get_expiry()) for item in rates[Door.HTTP]] == [(5, 1), (50, 60)]
    namespaces = {items[0].namespace for items in rates.values()}
    assert len(namespaces) == len(Door)  # one budget per door


def test_limits_are_settings() -> None:
    env = {"COACHGRAPH_LIMIT_WS_OPERATION_RATE_PER_MINUTE": "7"}
    assert Settings.from_env(env).limits.ws_operation_rate_per_minute == 7


# --- over real sockets: uvicorn as `coachgraph serve` starts it ----------------------------------


def serve_options(settings: Settings) -> dict[str, Any]:
    """The options `coachgraph serve` configures uvicorn with (caught at uvicorn.Config)."""
    captured: dict[str, Any] = {}

    class Caught(uvicorn.Config):
        def __init__(self, app: Any, **options: Any) -> None:
            captured.update(options)
            super().__init__(app, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uvicorn, "Config", Caught)
        patch.setattr(importlib.import_module("uvicorn.main"), "Config", Caught)
        patch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
        with contextlib.suppress(SystemExit):  # uvicorn.run exits when the server never started
            cli._serve(settings, argparse.Namespace(demo=False, host="127.0.0.1", port=8000))
    assert captured, "coachgraph serve did not configure uvicorn"
    return captured


@dataclasses.dataclass
class Served:
    url: str
    resources: Resources


@pytest.fixture(scope="module")
async def served(settings: Settings, tmp_root: Path) -> AsyncIterator[Served]:
    options = serve_options(settings)
    assert options["proxy_headers"] is False
    ready: list[Resources] = []

    async def keep(resources: Resources) -> None:
        ready.append(resources)

    app = create_app(
        settings.with_(data_dir=tmp_root / "rate-limits"), start_projector=False, on_ready=keep
    )
    async with serve(app, **{**options, "log_level": "warning"}) as url:
        yield Served(url, ready[0])


async def test_forwarded_for_from_loopback_is_not_a_new_client(served: Served) -> None:
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 by default; `serve` turns that off, so
    a loopback client naming another address each time is still one client."""
    async with limited(served.resources, rate_limit_per_minute=2), httpx.AsyncClient() as http:
        responses = [
            await http.post(
                f"{served.url}/graphql",
                json=QUERY,
                headers={"X-Forwarded-For": f"192.0.2.{i}"},
            )
            for i in range(4)
        ]
    assert [r.status_code for r in responses[:2]] == [200, 200]
    assert_limited(responses[-1])


async def ws_connect(base: str) -> Any:
    return await websockets.connect(
        base.replace("http", "ws", 1) + "/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        proxy=None,
    )


async def finished(client: WSClient, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every message of each operation, until each has completed or failed."""
    seen: dict[str, list[dict[str, Any]]] = {op: [] for op in ids}
    open_ops = set(ids)
    while open_ops:
        message = await client.recv()
        op = message.get("id")
        assert op in seen, message
        seen[op].append(message)
        if message["type"] in ("complete", "error"):
            open_ops.discard(op)
    return seen


def rate_limited(messages: list[dict[str, Any]], protocol: str) -> bool:
    """Whether an operation was refused by the limit, checking the protocol's error shape."""
    errors = [m for m in messages if m["type"] == "error"]
    if not errors:
        return False
    payload = errors[0]["payload"]
    if protocol == "graphql-transport-ws":
        assert isinstance(payload, list)
        error = payload[0]
    else:
        assert isinstance(payload, dict)
        error = payload
    if error.get("extensions", {}).get("code") != "RATE_LIMITED":
        return False
    assert len(messages) == 1, messages  # nothing of the operation ran
    assert error["extensions"]["retryAfter"] >= 1
    return True


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_websocket_operations_are_limited(served: Served, protocol: str) -> None:
    async with limited(served.resources, ws_operation_rate_per_minute=3):
        client = await WSClient.connect(served.url, token_for("coach", 11), protocol)
        try:
            assert (await client.ack())["type"] == "connection_ack"
            ids = [await client.subscribe("query { __typename }") for _ in range(5)]
            seen = await finished(client, ids)
        finally:
            await client.close()
    refused = [op for op in ids if rate_limited(seen[op], protocol)]
    assert ids[-1] in refused and len(refused) >= 1
    assert not any(rate_limited(seen[op], protocol) for op in ids[:3])


async def test_websocket_operations_share_the_clients_budget(served: Served) -> None:
    """Two sockets of one token draw on one budget."""
    token = token_for("coach", 12)
    async with limited(served.resources, ws_operation_rate_per_minute=3):
        first = await WSClient.connect(served.url, token)
        second = await WSClient.connect(served.url, token)
        try:
            await first.ack()
            await second.ack()
            ids_first = [await first.subscribe("query { __typename }") for _ in range(3)]
            seen_first = await finished(first, ids_first)
            ids_second = [await second.subscribe("query { __typename }") for _ in range(2)]
            seen_second = await finished(second, ids_second)
        finally:
            await first.close()
            await second.close()
    assert not any(rate_limited(seen_first[op], "graphql-transport-ws") for op in ids_first)
    assert rate_limited(seen_second[ids_second[-1]], "graphql-transport-ws")


async def test_websocket_connection_attempts_are_limited(served: Served) -> None:
    async with limited(served.resources, ws_connect_rate_per_minute=2):
        for _ in range(3):
            with contextlib.suppress(InvalidStatus):
                await (await ws_connect(served.url)).close()
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(served.url)
    response = refused.value.response
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert json.loads(response.body)["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_open_websocket_connections_are_capped(served: Served) -> None:
    async with limited(served.resources, ws_connections_per_client=2):
        held = [await ws_connect(served.url) for _ in range(2)]
        try:
            with pytest.raises(InvalidStatus) as refused:
                await ws_connect(served.url)
            assert refused.value.response.status_code == 429
            await held.pop().close()

            async def reconnected() -> bool:  # the slot is freed once the server sees the close
                try:
                    held.append(await ws_connect(served.url))
                except InvalidStatus:
                    return False
                return True

            await until(reconnected, "the closed connection's slot to be freed")
            assert len(held) == 2
        finally:
            for ws in held:
                await ws.close()


async def test_open_connections_per_token_are_capped(served: Served) -> None:
    """Connections move to their token's client at connection_init; past the cap the socket
    closes with 4429."""
    token = token_for("coach", 13)
    async with limited(served.resources, ws_connections_per_client=2):
        held = [await WSClient.connect(served.url, token) for _ in range(2)]
        try:
            for client in held:
                assert (await client.ack())["type"] == "connection_ack"
            third = await WSClient.connect(served.url, token)  # the address has room
            with pytest.raises(ConnectionClosed) as closed:
                await third.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
            anonymous = await WSClient.connect(served.url, None)
            assert (await anonymous.ack())["type"] == "connection_ack"
            await anonymous.close()
        finally:
            for client in held:
                await client.close()


# --- one budget across replicas -------------------------------------------------------------


@pytest.fixture(scope="module")
def limits_redis(tmp_root: Path) -> Iterator[str]:
    with redis_server(tmp_root / "redis-limits") as port:
        yield f"redis://127.0.0.1:{port}/0"


async def test_replicas_share_one_budget_through_redis(
    settings: Settings, limits_redis: str, tmp_root: Path
) -> None:
    shared = settings.with_(redis_url=limits_redis, limits=small(rate_limit_per_minute=3))
    apps = [
        create_app(shared.with_(data_dir=tmp_root / f"replica-{i}"), start_projector=False)
        for i in range(2)
    ]
    async with LifespanManager(apps[0]) as one, LifespanManager(apps[1]) as two:
        codes = []
        for i in range(8):  # alternately: each replica alone would let 3 + 3 through
            async with from_peer((one, two)[i % 2].app, "192.0.2.50") as c:
                codes.append((await c.post("/graphql", json=QUERY)).status_code)
    assert codes[:3] == [200, 200, 200]
    assert codes.count(200) <= 4 and codes[-1] == 429


async def test_redis_down_counts_in_process(settings: Settings, caplog: Any) -> None:
    """Without Redis the API stays up: each process counts on its own meanwhile."""
    with refusing_port() as port:
        dead = f"redis://127.0.0.1:{port}/0"
        limiter = Limiter.open(
            settings.with_(redis_url=dead, limits=small(rate_limit_per_minute=2))
        )
        try:
            with caplog.at_level(logging.WARNING, logger="coachgraph.limiter"):
                results = [await limiter.hit(Door.HTTP, "ip:192.0.2.1") for _ in range(4)]
        finally:
            await limiter.close()
    assert results[:2] == [None, None] and isinstance(results[-1], int)
    assert "unavailable" in caplog.text
