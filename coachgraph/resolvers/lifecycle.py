"""Data lifecycle resolvers: erasure (and export, audit), policy first."""

from __future__ import annotations

from coachgraph.errors import PermissionDenied, Unavailable
from coachgraph.lifecycle import erasure
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import Viewer
from coachgraph.stores.erasure import Erasure


async def erase_athlete(ctx: Context, athlete_id: int) -> Erasure:
    """eraseAthlete: the athlete itself or an admin."""
    may_erase(ctx.viewer, athlete_id)
    if ctx.lifecycle is None:
        raise Unavailable("lifecycle")
    return await erasure.erase(ctx.lifecycle, athlete_id=athlete_id)


def may_erase(viewer: Viewer, athlete_id: int) -> None:
    """Erasure and export: the athlete itself or an admin."""
    if not (viewer.is_admin or viewer.athlete_id == athlete_id):
        raise PermissionDenied("Only the athlete itself or an admin may do this")
