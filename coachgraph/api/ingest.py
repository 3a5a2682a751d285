"""POST /ingest/sessions/{id}/samples: NDJSON from wearables, one sample a line, all or none."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from coachgraph.api.auth import viewer_from_header
from coachgraph.api.resources import Resources
from coachgraph.config import Limits
from coachgraph.errors import DomainError, InvalidInput
from coachgraph.ids import decode_id, encode_cursor
from coachgraph.resolvers import live
from coachgraph.resolvers.live import BadSample, RawSample

STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404, "CONFLICT": 409}


def _error(err: DomainError) -> JSONResponse:
    body: dict[str, object] = {"message": err.message, "code": err.code}
    if isinstance(err, BadSample):
        body["line"] = err.index + 1
    elif isinstance(err, InvalidInput):
        body["field"] = err.field
    return JSONResponse({"error": body}, status_code=STATUS.get(err.code, 400))


async def lines(chunks: AsyncIterator[bytes], limits: Limits) -> AsyncIterator[bytes]:
    """Non-blank lines of a streamed body, each bounded in length and in number."""
    buffered = b""
    count = 0
    async for chunk in chunks:
        buffered += chunk
        *complete, buffered = buffered.split(b"\n")
        if len(buffered) > limits.max_ndjson_line_bytes:
            raise BadSample(count + len(complete), "line too long")
        for line in complete:
            if line.strip():
                count += 1
                if count > limits.max_ndjson_lines:
                    raise InvalidInput(
                        f"At most {limits.max_ndjson_lines} lines", field="body", code="TOO_MANY"
                    )
                yield line
    if buffered.strip():
        if count + 1 > limits.max_ndjson_lines:
            raise InvalidInput(
                f"At most {limits.max_ndjson_lines} lines", field="body", code="TOO_MANY"
            )
        yield buffered


def parse(index: int, line: bytes) -> RawSample:
    """One line: {"kind": "HEART_RATE", "at": "2026-11-22T10:00:00Z", "value": 142}."""
    try:
        item = json.loads(line)
        kind, at, value = item["kind"], item["at"], item["value"]
        if not isinstance(kind, str) or not isinstance(at, str) or isinstance(value, bool):
            raise TypeError(line)
        return kind, datetime.fromisoformat(at), float(value)
    except (ValueError, KeyError, TypeError):
        raise BadSample(
            index, 'expected {"kind": ..., "at": ISO 8601 time, "value": number}', where="line"
        ) from None


async def ingest(request: Request) -> JSONResponse:
    resources: Resources = request.state.resources
    limits = resources.settings.limits
    try:
        viewer = viewer_from_header(resources.jwt_secret, request.headers.get("authorization"))
        session_id = decode_id(request.path_params["id"], "TrainingSession")
        # refuse before reading the body when the session cannot take samples
        await live.writable_live_session(resources.db, viewer, session_id)
        samples = [parse(i, line) async for i, line in _numbered(lines(request.stream(), limits))]
        stored = await live.record(
            resources.db,
            resources.broker,
            viewer,
            session_id,
            samples,
            limits,
            where="line",
            max_count=limits.max_ndjson_lines,
        )
    except DomainError as err:
        return _error(err)
    return JSONResponse({"accepted": len(stored), "lastCursor": encode_cursor(stored[-1].seq)})


async def _numbered(items: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    i = 0
    async for item in items:
        yield i, item
        i += 1


routes = [Route("/ingest/sessions/{id}/samples", ingest, methods=["POST"])]
