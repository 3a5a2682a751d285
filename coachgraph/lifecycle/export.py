"""exportAthleteData: one JSON document of everything stored about an athlete, written as it
is read (samples and rollups through a cursor), behind a signed URL that expires."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from coachgraph.media.model import MediaStore
from coachgraph.stores import export
from coachgraph.stores.db import Database

ROUTE = "/exports/athletes/{athlete_id}"


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"coachgraph data exports", hashlib.sha256).digest()


def signature(secret: str, athlete_id: int, expires: int) -> str:
    message = f"{athlete_id}\n{expires}".encode()
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def signed_url(secret: str, *, base_url: str, athlete_id: int, ttl_seconds: int) -> tuple[str, int]:
    """The download URL of an athlete's export and when it expires (epoch seconds)."""
    expires = int(time.time()) + ttl_seconds
    path = ROUTE.format(athlete_id=athlete_id)
    sig = signature(secret, athlete_id, expires)
    return f"{base_url.rstrip('/')}{path}?exp={expires}&sig={sig}", expires


def verify(secret: str, athlete_id: int, expires: str, sig: str) -> str | None:
    """Why the URL is refused, or None when it is good."""
    if not expires.isdigit() or int(expires) < time.time():
        return "The link has expired"
    if not hmac.compare_digest(signature(secret, athlete_id, int(expires)), sig):
        return "The link's signature does not match"
    return None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, separators=(",", ":")).encode()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


async def document(
    db: Database,
    store: MediaStore,
    *,
    athlete_id: int,
    base_url: str,
    media_ttl_seconds: int,
    chunk_rows: int,
) -> AsyncIterator[bytes]:
    """The export, piece by piece, from one consistent snapshot (a read-only repeatable-read
    transaction); at most `chunk_rows` samples are held at a time."""
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield b'{"exportedAt":' + _dumps(datetime.now(UTC))
        for section in export.RECORDS:
            found = await export.records(conn, section=section, athlete_id=athlete_id)
            value = (found[0] if found else None) if section == "athlete" else found
            yield b',"' + section.encode() + b'":' + _dumps(value)
        rows = await export.media(conn, athlete_id=athlete_id)
        for row in rows:
            key = row.pop("storage_key")
            row["url"] = await store.download_url(
                key=key, expires_in=media_ttl_seconds, base_url=base_url
            )
        yield b',"media":' + _dumps(rows)
        for name, query, fields in (
            ("samples", export.SAMPLES, ("session_id", "seq", "kind", "at", "value")),
            (
                "rollups",
                export.ROLLUPS,
                ("session_id", "kind", "bucket", "count", "min", "max", "avg"),
            ),
        ):
            yield b',"' + name.encode() + b'":['
            batch: list[bytes] = []
            first = True
            async for row in export.stream(conn, query, athlete_id=athlete_id, prefetch=chunk_rows):
                batch.append(_dumps({f: row[f] for f in fields}))
                if len(batch) >= chunk_rows:
                    yield (b"" if first else b",") + b",".join(batch)
                    first, batch = False, []
            if batch:
                yield (b"" if first else b",") + b",".join(batch)
            yield b"]"
        yield b"}"
