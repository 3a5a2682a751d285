"""Data lifecycle resolvers: erasure (and export, audit), policy first."""

from __future__ import annotations

from datetime import UTC, datetime

from coachgraph.errors import NotFound, PermissionDenied, Unavailable
from coachgraph.lifecycle import erasure, export
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import Viewer
from coachgraph.stores import export as export_rows
from coachgraph.stores.erasure import Erasure


async def erase_athlete(ctx: Context, athlete_id: int) -> Erasure:
    """eraseAthlete: the athlete itself or an admin."""
    may_erase(ctx.viewer, athlete_id)
    if ctx.lifecycle is None:
        raise Unavailable("lifecycle")
    return await erasure.erase(ctx.lifecycle, athlete_id=athlete_id)


async def export_athlete_data(ctx: Context, athlete_id: int) -> tuple[str, datetime]:
    """exportAthleteData: the athlete itself or an admin; a signed URL of its document."""
    may_erase(ctx.viewer, athlete_id)
    if ctx.lifecycle is None:
        raise Unavailable("lifecycle")
    if not await export_rows.exists(ctx.db.pool, athlete_id=athlete_id):
        raise NotFound("Athlete", athlete_id)
    url, expires = export.signed_url(
        ctx.lifecycle.key,
        base_url=ctx.base_url,
        athlete_id=athlete_id,
        ttl_seconds=ctx.settings.limits.export_url_ttl_seconds,
    )
    return url, datetime.fromtimestamp(expires, UTC)


def may_erase(viewer: Viewer, athlete_id: int) -> None:
    """Erasure and export: the athlete itself or an admin."""
    if not (viewer.is_admin or viewer.athlete_id == athlete_id):
        raise PermissionDenied("Only the athlete itself or an admin may do this")
