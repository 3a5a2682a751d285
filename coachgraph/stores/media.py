"""Media rows: what was uploaded, for which owner, and whether its bytes are in place."""

from __future__ import annotations

from datetime import timedelta

from coachgraph.errors import Conflict, NotFound
from coachgraph.stores import outbox
from coachgraph.stores.records import MediaRecord
from coachgraph.stores.sql import Executor, maker

COLUMNS = (
    "m.id, m.owner_type, m.owner_id, m.kind::text AS kind, m.content_type, m.size_bytes, "
    "m.status::text AS status, m.storage_key, m.checksum, m.created_at"
)
make_media = maker(MediaRecord)
OwnerKey = tuple[str, int]


async def create(
    conn: Executor,
    *,
    owner_type: str,
    owner_id: int,
    kind: str,
    content_type: str,
    size_bytes: int,
    storage_key: str,
    created_by: str | None,
) -> MediaRecord:
    """A PENDING media row (inside a transaction)."""
    row = await conn.fetchrow(
        "INSERT INTO media AS m (owner_type, owner_id, kind, content_type, size_bytes, "
        "storage_key, created_by) VALUES ($1, $2, $3::media_kind, $4, $5, $6, $7) "
        f"RETURNING {COLUMNS}",
        owner_type,
        owner_id,
        kind,
        content_type,
        size_bytes,
        storage_key,
        created_by,
    )
    media = make_media(row)
    await _event(conn, media, "media.created")
    return media


async def get_many(conn: Executor, *, ids: list[int]) -> dict[int, MediaRecord]:
    """Media by id; missing ids are absent."""
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM media m WHERE m.id = ANY($1::bigint[])", ids)
    return {row["id"]: make_media(row) for row in rows}


async def ready_for_owners(
    conn: Executor, *, keys: list[OwnerKey]
) -> dict[OwnerKey, list[MediaRecord]]:
    """READY media of each (owner type, owner id), oldest first."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM media m
            JOIN unnest($1::text[], $2::bigint[]) AS o(owner_type, owner_id)
              ON m.owner_type = o.owner_type AND m.owner_id = o.owner_id
            WHERE m.status = 'READY' ORDER BY m.id""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    found: dict[OwnerKey, list[MediaRecord]] = {}
    for row in rows:
        found.setdefault((row["owner_type"], row["owner_id"]), []).append(make_media(row))
    return found


async def mark_ready(conn: Executor, *, media_id: int, checksum: str) -> MediaRecord:
    """PENDING → READY with the stored object's checksum; Conflict when not PENDING."""
    row = await conn.fetchrow(
        "UPDATE media m SET status = 'READY', checksum = $2, completed_at = now() "
        f"WHERE m.id = $1 AND m.status = 'PENDING' RETURNING {COLUMNS}",
        media_id,
        checksum,
    )
    if row is None:
        if not await get_many(conn, ids=[media_id]):
            raise NotFound("Media", media_id)
        raise Conflict("This upload is already complete")
    media = make_media(row)
    await _event(conn, media, "media.ready")
    return media


async def delete(conn: Executor, *, media_id: int) -> MediaRecord:
    """Remove a media row (its bytes are the caller's to remove)."""
    row = await conn.fetchrow(f"DELETE FROM media m WHERE m.id = $1 RETURNING {COLUMNS}", media_id)
    if row is None:
        raise NotFound("Media", media_id)
    media = make_media(row)
    await _event(conn, media, "media.deleted")
    return media


async def delete_stale_pending(
    conn: Executor, *, older_than: timedelta, limit: int
) -> list[MediaRecord]:
    """Remove up to `limit` PENDING rows created before now - `older_than`; return them."""
    rows = await conn.fetch(
        f"""DELETE FROM media m WHERE m.id IN (
                SELECT id FROM media WHERE status = 'PENDING' AND created_at < now() - $1::interval
                ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING {COLUMNS}""",
        older_than,
        limit,
    )
    return [make_media(r) for r in rows]


async def _event(conn: Executor, media: MediaRecord, event: str) -> None:
    await outbox.append(
        conn,
        aggregate="media",
        aggregate_id=media.id,
        event=event,
        payload={"owner_type": media.owner_type, "owner_id": media.owner_id, "kind": media.kind},
    )
