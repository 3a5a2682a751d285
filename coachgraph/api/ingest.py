"""POST /ingest/sessions/{id}/samples: NDJSON from wearables, one sample a line, all or none;
the same body again (a retry) is answered as the first was, `replayed`, and stores nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from coachgraph.api import doors
from coachgraph.api.auth import viewer_from_header
from coachgraph.api.doors import Refusal
from coachgraph.config import Limits
from coachgraph.errors import DomainError, InvalidInput
from coachgraph.ids import decode_id, encode_cursor
from coachgraph.resolvers import live
from coachgraph.resolvers.live import BadSample, RawSample
from coachgraph.runtime import Resources


def _error(err: DomainError) -> JSONResponse:
    extra: dict[str, object] = {}
    if isinstance(err, BadSample):
        extra["line"] = err.index + 1
    elif isinstance(err, InvalidInput):
        extra["field"] = err.field
    status = doors.STATUS_OF_CODE.get(err.code, 400)
    return Refusal(status, err.message, err.code).route_response(extra)


async def lines(chunks: AsyncIterator[bytes], limits: Limits) -> AsyncIterator[bytes]:
    """Non-blank lines of a streamed body, each bounded in length and in number."""
    buffered = b""
    count = 0
    async for chunk in _terminated(chunks):
        buffered += chunk
        *complete, buffered = buffered.split(b"\n")
        if len(buffered) > limits.max_ndjson_line_bytes:
            raise BadSample(count + len(complete), "line too long")
        for line in complete:
            if len(line) > limits.max_ndjson_line_bytes:  # whole lines too, not only the tail
                raise BadSample(count, "line too long")
            if line.strip():
                count += 1
                if count > limits.max_ndjson_lines:
                    raise InvalidInput(
                        f"At most {limits.max_ndjson_lines} lines", field="body", code="TOO_MANY"
                    )
                yield line


async def _terminated(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body, then a newline: a last line without one is a line all the same."""
    async for chunk in chunks:
        yield chunk
    yield b"\n"


def _sample(item: Any) -> RawSample:
    """{"kind": "HEART_RATE", "at": "2026-11-22T10:00:00Z", "value": 142} as a raw sample."""
    kind, at, value = item["kind"], item["at"], item["value"]
    if type(kind) is not str or type(at) is not str or type(value) not in (int, float):
        raise TypeError(item)
    return kind, datetime.fromisoformat(at), float(value)


def parse(index: int, line: bytes) -> RawSample:
    """One line, or BadSample naming it."""
    try:
        return _sample(json.loads(line))
    except (ValueError, KeyError, TypeError, RecursionError):
        raise BadSample(
            index, 'expected {"kind": ..., "at": ISO 8601 time, "value": number}', where="line"
        ) from None


async def ingest(request: Request) -> JSONResponse:
    resources: Resources = request.state.resources
    limits = resources.settings.limits
    try:
        viewer = viewer_from_header(resources.jwt_secret, request.headers.get("authorization"))
        session_id = decode_id(request.path_params["id"], "TrainingSession")
        # every piece of the body under the read timeout and minimum rate; a stall refuses the
        # request and rolls its transaction back
        body = doors.body_chunks(request.receive, limits, max_bytes=_max_body(limits))
        digest = hashlib.sha256()  # of the whole body: a retry of it is answered, not stored
        chunks = parsed_chunks(lines(_hashed(body, digest), limits), limits.ndjson_copy_chunk)
        # no connection is taken before the first chunk is read and parsed: a client that
        # dawdles before it holds nothing of the pool
        done = await live.record_chunks(
            resources.db,
            resources.broker,
            viewer,
            session_id,
            await _first_read(chunks),
            clock_slack=live.clock_slack(limits),
            digest=digest.digest,
        )
    except Refusal as err:
        return err.route_response()
    except DomainError as err:
        return _error(err)
    except ClientDisconnect:  # nobody is left to read the answer; nothing was stored
        return Refusal(400, "The client left before the body was complete").route_response()
    return JSONResponse(
        {
            "accepted": done.count,
            "lastCursor": encode_cursor(done.last_seq),
            "replayed": done.replayed,
        }
    )


async def _hashed(chunks: AsyncIterator[bytes], digest: Any) -> AsyncIterator[bytes]:
    """The body as it streams, each piece added to `digest` (a hashlib hash) on its way."""
    async for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _max_body(limits: Limits) -> int:
    """The most bytes a body can hold: every line at its longest, with CRLF (blank lines too)."""
    return limits.max_ndjson_lines * (limits.max_ndjson_line_bytes + 2)


async def _first_read(
    chunks: AsyncIterator[list[RawSample]],
) -> AsyncIterator[list[RawSample]]:
    """`chunks` with its first one already read and parsed. A stall or an oversize body is
    refused now; a bad sample is raised where record_chunks pulls the first chunk, after its
    permission check, so a refusal of the session still comes first."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return _chained([], chunks)
    except Refusal:
        raise
    except DomainError as err:
        return _failing(err)
    return _chained([first], chunks)


async def _chained(
    head: list[list[RawSample]], rest: AsyncIterator[list[RawSample]]
) -> AsyncIterator[list[RawSample]]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


async def _failing(err: DomainError) -> AsyncIterator[list[RawSample]]:
    raise err
    yield []  # an async generator, which raises when first pulled


async def parsed_chunks(items: AsyncIterator[bytes], size: int) -> AsyncIterator[list[RawSample]]:
    """Parsed samples in lists of `size` (the unit of one COPY), as the body streams in."""
    chunk: list[bytes] = []
    first = 0
    async for line in items:
        chunk.append(line)
        if len(chunk) == size:
            yield parse_chunk(first, chunk)
            first += size
            chunk = []
    if chunk:
        yield parse_chunk(first, chunk)


def parse_chunk(first: int, chunk: list[bytes]) -> list[RawSample]:
    """One json.loads for the whole chunk (its lines as a JSON array), then a tight loop; only
    when that fails are the lines parsed one by one, to name the first bad one."""
    try:
        items = json.loads(b"[" + b",".join(chunk) + b"]")
        if len(items) == len(chunk):  # a line holding "1, 2" would shift every index
            return [_sample(item) for item in items]
    except (ValueError, KeyError, TypeError, RecursionError):
        pass
    return [parse(first + i, line) for i, line in enumerate(chunk)]


routes = [Route("/ingest/sessions/{id}/samples", ingest, methods=["POST"])]
