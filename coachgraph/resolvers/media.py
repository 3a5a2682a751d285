"""Media: tickets to upload straight to storage, verification on completion, deletion."""

from __future__ import annotations

from dataclasses import dataclass

from coachgraph.errors import InvalidInput, NotFound, PermissionDenied
from coachgraph.media.model import (
    SNIFF_BYTES,
    UploadTicket,
    check_upload,
    new_key,
    sniff_matches,
)
from coachgraph.resolvers import queries
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import (
    AthleteAccess,
    SessionFacts,
    can_edit_athlete,
    can_edit_coach,
    can_read_session,
    can_write_session_data,
    missing,
    require,
)
from coachgraph.stores import coaches, media
from coachgraph.stores.records import MediaRecord


@dataclass(frozen=True, slots=True)
class Ticket:
    media: MediaRecord
    upload: UploadTicket


async def _require_owner_writable(ctx: Context, owner_type: str, owner_id: int) -> None:
    """The owner exists and the viewer may change it (API.md); NotFound or PermissionDenied."""
    viewer = ctx.viewer
    loaders = ctx.loaders
    if owner_type == "Coach":
        if await loaders.coach_by_id.load(owner_id) is None:
            raise NotFound("Coach", owner_id)
        require(can_edit_coach(viewer, owner_id), "You may only add media to your own profile")
    elif owner_type == "Athlete":
        if await loaders.athlete_by_id.load(owner_id) is None:
            raise NotFound("Athlete", owner_id)
        require(can_edit_athlete(viewer, owner_id), "You may only add media to your own profile")
    elif owner_type == "Program":
        program = await loaders.program_by_id.load(owner_id)
        if program is None:
            raise NotFound("Program", owner_id)
        require(can_edit_coach(viewer, program.coach_id), "Only its coach may add media")
    else:
        session = await loaders.session_by_id.load(owner_id)
        if session is None:
            raise NotFound("TrainingSession", owner_id)
        coached = await coaches.coaches_now(
            ctx.db.pool, coach_id=session.coach_id, athlete_id=session.athlete_id
        )
        facts = SessionFacts(session.coach_id, session.athlete_id, coached)
        require(can_write_session_data(viewer, facts), "You may not add media to it")


async def require_readable(ctx: Context, found: MediaRecord) -> None:
    """Media are as visible as their owner: coaches and programs to all, the rest by policy."""
    owner_type, owner_id = found.owner_type, found.owner_id
    if owner_type == "Athlete":
        athlete = await queries.athlete(ctx, owner_id)
        if found.kind != "AVATAR" and await queries.access_to(ctx, athlete) is not (
            AthleteAccess.FULL
        ):
            raise PermissionDenied("You may not see this athlete's media")
    elif owner_type == "TrainingSession":
        session = await ctx.loaders.session_by_id.load(owner_id)
        if session is None or not can_read_session(ctx.viewer, session):
            raise PermissionDenied("You may not see this session's media")


async def get(ctx: Context, media_id: int) -> MediaRecord:
    found = await ctx.loaders.media_by_id.load(media_id)
    if found is None:
        raise NotFound("Media", media_id)
    await require_readable(ctx, found)
    return found


async def create_upload(
    ctx: Context, *, owner_type: str, owner_id: int, kind: str, content_type: str, size_bytes: int
) -> Ticket:
    """A PENDING media row and a signed ticket to upload exactly those bytes."""
    if owner_type not in ("Coach", "Athlete", "Program", "TrainingSession"):
        raise InvalidInput(
            f"A {owner_type} cannot own media", field="ownerId", code="WRONG_ID_TYPE"
        )
    limits = ctx.settings.limits
    ctype = check_upload(
        owner_type=owner_type,
        kind=kind,
        content_type=content_type,
        size_bytes=size_bytes,
        limits=limits,
    )
    await _require_owner_writable(ctx, owner_type, owner_id)
    key = new_key(kind=kind, owner_type=owner_type, owner_id=owner_id, content_type=ctype)
    upload = await ctx.media.upload_ticket(
        key=key,
        content_type=ctype,
        size_bytes=size_bytes,
        expires_in=limits.media_upload_ttl_seconds,
        base_url=ctx.base_url,
    )
    async with ctx.db.transaction() as conn:
        record = await media.create(
            conn,
            owner_type=owner_type,
            owner_id=owner_id,
            kind=kind,
            content_type=ctype,
            size_bytes=size_bytes,
            storage_key=key,
            created_by=ctx.viewer.subject or (ctx.viewer.role.value if ctx.viewer.role else None),
        )
    return Ticket(record, upload)


async def _writable(ctx: Context, media_id: int) -> MediaRecord:
    found = await ctx.loaders.media_by_id.load(media_id)
    if found is None:
        raise missing(ctx.viewer, "Media", media_id, "You may not change this media")
    await _require_owner_writable(ctx, found.owner_type, found.owner_id)
    return found


async def complete_upload(ctx: Context, media_id: int) -> MediaRecord:
    """Check the stored bytes are what was declared, then mark the media READY.

    Bytes that break the ticket are removed, so a client may upload again with a new ticket;
    the row stays PENDING until the purge job removes it.
    """
    found = await _writable(ctx, media_id)
    if found.status == "READY":
        return found
    stored = await ctx.media.stat(key=found.storage_key)
    if stored is None:
        raise InvalidInput("Nothing has been uploaded yet", field="mediaId", code="NOT_UPLOADED")
    problem = None
    if stored.size_bytes != found.size_bytes:
        problem = (
            "SIZE_MISMATCH",
            f"Uploaded {stored.size_bytes} bytes, declared {found.size_bytes}",
        )
    elif (stored.content_type or "").lower() != found.content_type:
        problem = (
            "CONTENT_TYPE_MISMATCH",
            f"Uploaded as {stored.content_type}, declared {found.content_type}",
        )
    else:
        head = await ctx.media.read_head(key=found.storage_key, length=SNIFF_BYTES)
        if not sniff_matches(found.content_type, head):
            problem = ("CONTENT_MISMATCH", f"The file is not {found.content_type}")
    if problem is not None:
        await ctx.media.delete(key=found.storage_key)
        raise InvalidInput(problem[1], field="mediaId", code=problem[0])
    async with ctx.db.transaction() as conn:
        return await media.mark_ready(conn, media_id=media_id, checksum=stored.checksum)


async def delete_media(ctx: Context, media_id: int) -> MediaRecord:
    """Remove the row, then the bytes (a failure between leaves bytes, never a dangling row)."""
    await _writable(ctx, media_id)
    async with ctx.db.transaction() as conn:
        deleted = await media.delete(conn, media_id=media_id)
    await ctx.media.delete(key=deleted.storage_key)
    return deleted


async def download_url(ctx: Context, found: MediaRecord) -> str | None:
    if found.status != "READY":
        return None
    return await ctx.media.download_url(
        key=found.storage_key,
        expires_in=ctx.settings.limits.media_download_ttl_seconds,
        base_url=ctx.base_url,
    )
