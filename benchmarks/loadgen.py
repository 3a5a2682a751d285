"""A cheap load generator: benchmarks/soak.py's client loop on raw HTTP/1.1 keep-alive
connections, with each request's bytes made before the run.

httpx builds, encodes and parses every request in Python (headers, JSON, its connection pool);
on the 2-core machine its two load-generating processes took more CPU per request than the
server they measured (benchmarks/workers.py, first run). Here each client owns one connection
(asyncio streams, on uvloop when installed), its requests are bytes prepared at start (the
search words, the match and dashboard queries; an update's headline and a recording's times are
spliced into fixed byte templates), and an answer is read by its Content-Length; its JSON is
parsed only when it carries an error (`"errors"` or a typed `...Error` result).

    run_clients(port, share, warmup, seconds, only=None)
        -> (latency ms per operation, [(operation, error code, count)])

The same weights and pauses as soak.py's `client_loop` (dashboard, search, match, update,
record 4:3:2:1:2; 50-250 ms after each answer), or one operation alone (`only`), to measure
its cost per request.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from benchmarks.soak import DASHBOARD, MATCH, RECORD, SEARCH, UPDATE, WORDS, token
from coachgraph.ids import to_global_id
from coachgraph.resolvers.policy import Role

OPERATIONS = ("dashboard", "search", "match", "update", "record")
WEIGHTS = (4, 3, 2, 1, 2)


def _request(port: int, bearer: str, body: bytes) -> bytes:
    head = (
        f"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\naccept: application/json\r\n"
        f"authorization: Bearer {bearer}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    document: dict[str, Any] = {"query": query}
    if variables is not None:
        document["variables"] = variables
    return json.dumps(document, separators=(",", ":")).encode()


class Requests:
    """One client's requests, made once: bytes, or a template with a fixed-width hole."""

    HEADLINE = "soak 0.000000"  # rng.random() as %.6f is always this wide
    AT = "2000-01-01T00:00:00.000000+00:00"  # a UTC time as _at() writes it

    def __init__(self, port: int, session: tuple[int, int, int]) -> None:
        sid, coach_id, athlete_id = session
        coach = token(Role.COACH, "Coach", coach_id)
        athlete = token(Role.ATHLETE, "Athlete", athlete_id)
        coach_gid, athlete_gid = (
            to_global_id("Coach", coach_id),
            to_global_id("Athlete", athlete_id),
        )
        self.dashboard = _request(port, coach, _body(DASHBOARD))
        self.search = [_request(port, athlete, _body(SEARCH, {"q": w})) for w in WORDS]
        self.match = _request(port, athlete, _body(MATCH, {"id": athlete_gid}))
        update = _request(port, coach, _body(UPDATE, {"id": coach_gid, "h": self.HEADLINE}))
        self.update = update.split(self.HEADLINE.encode())
        assert len(self.update) == 2
        samples = [{"kind": "HEART_RATE", "at": self.AT, "value": 120 + i} for i in range(10)]
        record = _request(
            port, coach, _body(RECORD, {"id": to_global_id("TrainingSession", sid), "s": samples})
        )
        self.record = record.split(self.AT.encode())
        assert len(self.record) == 11

    def make(self, op: str, rng: random.Random) -> bytes:
        if op == "dashboard":
            return self.dashboard
        if op == "search":
            return rng.choice(self.search)
        if op == "match":
            return self.match
        if op == "update":
            return self.update[0] + f"soak {rng.random():.6f}".encode() + self.update[1]
        return _at().join(self.record)


def _at() -> bytes:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00").encode()


class Closed(Exception):
    """The server closed the connection before (or while) answering."""


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes, bool]:
    """One request on a keep-alive connection: (status, body, whether the server closes)."""
    writer.write(request)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError) as err:
        raise Closed from err
    status = int(head[9:12])
    length = -1
    closes = False
    for line in head.lower().split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line[15:])
        elif line.startswith(b"connection:") and b"close" in line:
            closes = True
        elif line.startswith(b"transfer-encoding:") and b"chunked" in line:
            return status, await _chunked(reader), closes
    if length < 0:
        raise Closed("an answer without content-length")
    try:
        body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError) as err:
        raise Closed from err
    return status, body, closes


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def codes_of(status: int, body: bytes) -> list[str]:
    """soak.py's error codes (HTTP 5xx, GraphQL extensions.code, typed ...Error results), with
    the JSON parsed only when one may be there."""
    if status >= 500:
        return [f"HTTP {status}"]
    if b'"errors"' not in body and b'Error"' not in body:
        return [] if status < 400 else [f"HTTP {status}"]
    try:
        answer = json.loads(body)
    except ValueError:
        return [f"HTTP {status} not JSON"]
    codes = [e.get("extensions", {}).get("code", "NO CODE") for e in answer.get("errors") or ()]
    for value in (answer.get("data") or {}).values():
        typename = value.get("__typename") if isinstance(value, dict) else None
        if typename and typename.endswith("Error"):
            codes.append(typename)
    return codes


class Tally:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.codes: Counter[tuple[str, str]] = Counter()
        self.measuring = False


async def client(
    port: int,
    tally: Tally,
    deadline: float,
    session: tuple[int, int, int],
    rng: random.Random,
    only: str | None,
) -> None:
    requests = Requests(port, session)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            op = only or rng.choices(OPERATIONS, WEIGHTS)[0]
            request = requests.make(op, rng)
            started = time.perf_counter()
            try:
                status, body, closes = await exchange(reader, writer, request)
                codes = codes_of(status, body)
            except Closed:
                codes, closes = ["transport closed"], True
            if tally.measuring:
                tally.latency[op].append((time.perf_counter() - started) * 1000)
                for code in codes:
                    tally.codes[(op, code)] += 1
            if closes:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(rng.uniform(0.05, 0.25))  # people and apps pause
    finally:
        writer.close()


def run_clients(
    port: int,
    share: list[tuple[int, Any]],
    warmup: float,
    seconds: float,
    only: str | None = None,
) -> tuple[dict[str, list[float]], list[tuple[str, str, int]]]:
    """One load-generating process: its share of the clients (index, session), measured for
    `seconds` after `warmup`."""

    async def run() -> Tally:
        tally = Tally()
        deadline = time.perf_counter() + warmup + seconds
        clients = [
            asyncio.create_task(client(port, tally, deadline, session, random.Random(i), only))
            for i, session in share
        ]
        await asyncio.sleep(warmup)
        tally.measuring = True
        await asyncio.gather(*clients)
        return tally

    try:
        import uvloop

        tally = uvloop.run(run())
    except ImportError:
        tally = asyncio.run(run())
    return dict(tally.latency), [(op, code, n) for (op, code), n in tally.codes.items()]
