"""GraphQL over HTTP on the wire: which media type a client gets, the status a result answers
with, the caching of anonymous persisted GETs, and the lifetime of an HTTP subscription stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any

from graphql import GraphQLError
from starlette.responses import Response
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from coachgraph.api.doors import STATUS_OF_CODE
from coachgraph.schema.extensions import present_error

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
_STATUS = {**STATUS_OF_CODE, "INTERNAL": 500}


def response_type(accept: str | None) -> str:
    """application/graphql-response+json when the client accepts it at least as much as
    application/json; application/json otherwise (no Accept, `*/*`: legacy clients)."""
    if not accept or "graphql-response" not in accept:
        return JSON
    weights: dict[str, float] = {}
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        kind = kind.lower()
        weights[kind] = max(weights.get(kind, 0.0), weight)
    wanted = weights.get(GRAPHQL_RESPONSE, 0.0)
    return GRAPHQL_RESPONSE if wanted > 0 and wanted >= weights.get(JSON, 0.0) else JSON


def header_of(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def is_request_error(result: ExecutionResult) -> bool:
    """Nothing was executed (a parse, validation, variable or document error): the GraphQL
    over HTTP spec's request error, which has no `data` and a 4xx/5xx status."""
    if isinstance(result, PreExecutionError):
        return True
    errors = result.errors or []
    return result.data is None and bool(errors) and all(e.path is None for e in errors)


def status_of(result: ExecutionResult) -> int:
    """The status of a request error under application/graphql-response+json: its first
    error's code decides (401, 403, 429, 503, 500), 400 for the rest."""
    for error in result.errors or ():
        code = (error.extensions or {}).get("code")
        return _STATUS.get(code, 400) if isinstance(code, str) else 400
    return 400


def refused(error: GraphQLError) -> PreExecutionError:
    return PreExecutionError(data=None, errors=[error])


class SubResponse(Response):
    """Strawberry's sub-response, carrying what the final response needs to know: the media
    type negotiated, and for a cacheable answer its max-age and the client's If-None-Match."""

    def __init__(self, media_type: str, if_none_match: str | None) -> None:
        super().__init__()
        self.status_code = None  # type: ignore[assignment]  # Strawberry's "not set"
        del self.headers["content-length"]
        self.negotiated = media_type
        self.if_none_match = if_none_match
        self.max_age: int | None = None


def finish(response: Response, sub_response: SubResponse) -> Response:
    """An anonymous persisted GET answer made cacheable (Cache-Control, ETag), or a 304 when
    the client already holds it."""
    if sub_response.max_age is None or response.status_code != 200:
        return response
    etag = '"' + hashlib.sha256(response.body).hexdigest()[:32] + '"'
    headers = {
        "Cache-Control": f"public, max-age={sub_response.max_age}",
        "ETag": etag,
        "Vary": "Accept, Authorization",
    }
    wanted = sub_response.if_none_match
    if wanted and (wanted.strip() == "*" or etag in (t.strip() for t in wanted.split(","))):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return response


async def bounded_stream(
    source: AsyncIterator[Any],
    *,
    expires_at: float | None,
    acquire: Callable[[], bool],
    release: Callable[[], None],
) -> AsyncGenerator[Any, None]:
    """An HTTP subscription's results: counted as one of its client's open connections while it
    runs, ended at its token's expiry (one coded error, then complete, as WebSocket closes with
    4401), and its source closed however it ends, the client leaving included."""
    if not acquire():
        yield _error("Too many open subscriptions; close one first", "RATE_LIMITED")
        return
    try:
        iterator = aiter(source)
        while True:
            try:
                if expires_at is None:
                    result = await anext(iterator)
                else:
                    async with asyncio.timeout(max(0.0, expires_at - time.time())):
                        result = await anext(iterator)
            except StopAsyncIteration:
                return
            except GraphQLError as err:  # a syntax error raised, not returned, by the parser cache
                yield refused(present_error(err))
                return
            except TimeoutError:
                yield _error("Token expired; subscribe again with a fresh token", "UNAUTHENTICATED")
                return
            yield result
    finally:
        release()
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()


def _error(message: str, code: str) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[GraphQLError(message, extensions={"code": code})])
