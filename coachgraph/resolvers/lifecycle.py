"""Data lifecycle resolvers: erasure (and export, audit), policy first."""

from __future__ import annotations

from datetime import UTC, datetime

from coachgraph.errors import InvalidInput, NotFound, PermissionDenied, Unavailable
from coachgraph.ids import from_global_id
from coachgraph.lifecycle import erasure, export
from coachgraph.resolvers import validate
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import Role, Viewer, require
from coachgraph.stores import audit
from coachgraph.stores import export as export_rows
from coachgraph.stores.erasure import Erasure
from coachgraph.stores.records import Page


async def erase_athlete(ctx: Context, athlete_id: int) -> Erasure:
    """eraseAthlete: the athlete itself or an admin."""
    may_erase(ctx.viewer, athlete_id)
    if ctx.lifecycle is None:
        raise Unavailable("lifecycle")
    done = await erasure.erase(ctx.lifecycle, athlete_id=athlete_id)
    audited(ctx, "erase", athlete_id, always=True)
    return done


async def export_athlete_data(ctx: Context, athlete_id: int) -> tuple[str, datetime]:
    """exportAthleteData: the athlete itself or an admin; a signed URL of its document."""
    may_erase(ctx.viewer, athlete_id)
    if ctx.lifecycle is None:
        raise Unavailable("lifecycle")
    if not await export_rows.exists(ctx.db.pool, athlete_id=athlete_id):
        raise NotFound("Athlete", athlete_id)
    audited(ctx, "export", athlete_id, always=True)
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


def actor_of(viewer: Viewer) -> str:
    """Who did it, as audit rows name them: the role and, for coaches and athletes, the ID."""
    role = viewer.role.name if viewer.role else "ANONYMOUS"
    return f"{role} {viewer.subject}" if viewer.subject else role


def audited(ctx: Context, action: str, athlete_id: int, *, always: bool = False) -> None:
    """Note that the viewer read or changed the athlete's data (nothing when it is the athlete
    itself, unless `always`); once per request, its INSERT started at once (shared with the
    events of concurrent requests), the request's end waiting for it."""
    if ctx.audit is None or (ctx.viewer.athlete_id == athlete_id and not always):
        return
    ctx.audit.record(actor=actor_of(ctx.viewer), action=action, athlete_id=athlete_id, db=ctx.db)


async def audit_events(
    ctx: Context, subject_id: str | None, first: int | None, after: str | None
) -> tuple[Page[audit.AuditEvent], int]:
    """auditEvents: admins read all (or one subject's); an athlete the events about itself."""
    viewer = ctx.viewer
    key = ctx.lifecycle.key if ctx.lifecycle else ""
    subject = _subject(key, subject_id) if subject_id is not None else None
    if not viewer.is_admin:
        require(
            viewer.role is Role.ATHLETE and viewer.athlete_id is not None,
            "Only admins, and athletes about themselves, read audit events",
        )
        assert viewer.athlete_id is not None
        own = erasure.subject_of(key, "Athlete", viewer.athlete_id)
        require(subject in (None, own), "An athlete reads the audit events about itself only")
        subject = own
    size, cursor = validate.page_args(first, after, ctx.settings.limits)
    found = await audit.page(ctx.db.pool, subject=subject, first=size, after=cursor)
    total = await audit.count(ctx.db.pool, subject=subject)
    return found, total


def _subject(key: str, subject_id: str) -> str:
    """An Athlete's global ID, or the opaque subject an audit event carries (erased ones)."""
    if subject_id.startswith("s_") and len(subject_id) == 34:
        return subject_id
    type_name, raw_id = from_global_id(subject_id, field="subjectId")
    if type_name != "Athlete":
        raise InvalidInput("Audit subjects are athletes", field="subjectId", code="INVALID_ID")
    return erasure.subject_of(key, "Athlete", raw_id)
