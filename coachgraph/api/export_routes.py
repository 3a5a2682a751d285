"""GET /exports/athletes/{id}: an athlete's data export, streamed, by signed expiring URL."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from coachgraph.api.doors import Refusal
from coachgraph.lifecycle import export
from coachgraph.runtime import Resources
from coachgraph.stores import export as export_rows


async def download(request: Request) -> Response:
    resources: Resources = request.state.resources
    raw = request.path_params["athlete_id"]
    q = request.query_params
    why = export.verify(resources.jwt_secret, raw, q.get("exp", ""), q.get("sig", ""))
    if why is not None:
        return Refusal.of_status(403, why).route_response()
    if not await export_rows.exists(resources.db.pool, athlete_id=raw):
        return Refusal.of_status(404, "No such athlete (erased?)").route_response()
    limits = resources.settings.limits
    body = export.document(
        resources.db,
        resources.media,
        athlete_id=raw,
        base_url=resources.settings.public_url or str(request.base_url),
        media_ttl_seconds=limits.media_download_ttl_seconds,
        chunk_rows=limits.export_chunk_rows,
    )
    return StreamingResponse(
        body,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="athlete-{raw}.json"',
            "Cache-Control": "private, no-store",
        },
    )


routes = [Route("/exports/athletes/{athlete_id:int}", download, methods=["GET"])]
