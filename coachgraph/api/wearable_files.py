"""POST /ingest/sessions/{id}/files: a wearable's FIT, TCX or GPX file of one session.

The file's samples are stored as the NDJSON route stores its lines: the same checks (kinds,
ranges, times within the session), in COPY chunks of `ndjson_copy_chunk` inside one
transaction, all or nothing, published after the commit, and the same answer
(`{"accepted", "lastCursor", "replayed"}`, plus `format` and `skipped`). A COMPLETED session
takes a file too, when every sample lies between its start and its end (uploads come after
the ride); its program's leaderboards are refreshed then. The same bytes again store nothing
and answer as the first upload did, and a sample of a kind the session already holds in that
second (or in a minute retention rolled up) is skipped (resolvers/wearables.py).

The session's permission and status are checked first, then the body is read whole (at most
`max_wearable_file_bytes`) and parsed in a worker thread; no pooled connection is held while it
arrives or parses."""

from __future__ import annotations

import asyncio
import hashlib

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from coachgraph.api import doors
from coachgraph.api.auth import viewer_from_header
from coachgraph.api.doors import Refusal
from coachgraph.api.wearable_formats import detect, extract
from coachgraph.errors import DomainError, InvalidInput
from coachgraph.ids import decode_id, encode_cursor
from coachgraph.resolvers import live, wearables
from coachgraph.resolvers.live import BadSample
from coachgraph.runtime import Resources


def _error(err: DomainError) -> JSONResponse:
    """`{"error": {message, code, field, reason}}`: `reason` is the problem's own code
    (UNSUPPORTED_FILE, CORRUPT_FILE, EMPTY_FILE, TOO_MANY, INVALID_SAMPLE)."""
    extra: dict[str, object] = {}
    if isinstance(err, InvalidInput):
        extra = {"field": err.field, "reason": err.reason}
        if isinstance(err, BadSample):
            extra["sample"] = err.index
    status = doors.STATUS_OF_CODE.get(err.code, 400)
    return Refusal(status, err.message, err.code).route_response(extra)


async def upload(request: Request) -> JSONResponse:
    resources: Resources = request.state.resources
    limits = resources.settings.limits
    try:
        viewer = viewer_from_header(resources.jwt_secret, request.headers.get("authorization"))
        session_id = decode_id(request.path_params["id"], "TrainingSession")
        # who may write, and whether the session takes samples, before the body is read
        await live.writable_live_session(resources.db, viewer, session_id, completed_too=True)
        data = await doors.read_body(
            request.receive, limits, max_bytes=limits.max_wearable_file_bytes
        )
        digest = hashlib.sha256(data).digest()
        earlier = await wearables.earlier_upload(resources.db, session_id=session_id, digest=digest)
        if earlier is not None:  # a retry: answered as the first upload was, nothing parsed
            return _answer(*earlier)
        kind = detect(request.headers.get("content-type"), data[:64])
        found, samples = await asyncio.to_thread(
            extract, data, kind, max_samples=limits.max_wearable_file_samples
        )
        del data
        done = await wearables.record_file(
            resources.db,
            resources.broker,
            resources.leaderboards,
            viewer,
            session_id,
            samples,
            source=found,
            digest=digest,
            clock_slack=live.clock_slack(limits),
            chunk=limits.ndjson_copy_chunk,
        )
    except Refusal as err:
        return err.route_response()
    except DomainError as err:
        return _error(err)
    except ClientDisconnect:  # nobody is left to read the answer; nothing was stored
        return Refusal(400, "The client left before the body was complete").route_response()
    return _answer(found, done)


def _answer(found: str, done: live.Recorded) -> JSONResponse:
    """`accepted` samples stored, up to `lastCursor`; `skipped`: those the session already
    held in their second; `replayed`: the same bytes were uploaded before, and this is that
    upload's answer."""
    return JSONResponse(
        {
            "accepted": done.count,
            "lastCursor": encode_cursor(done.last_seq),
            "format": found,
            "skipped": done.skipped,
            "replayed": done.replayed,
        }
    )


routes = [Route("/ingest/sessions/{id}/files", upload, methods=["POST"])]
