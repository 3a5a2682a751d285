"""The purge job: PENDING media older than the limit go, rows first, then their bytes."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from coachgraph.config import Limits
from coachgraph.media.model import MediaStore
from coachgraph.stores import media
from coachgraph.stores.db import Database

log = logging.getLogger(__name__)


async def purge_stale(db: Database, store: MediaStore, *, older_than: timedelta, batch: int) -> int:
    """Remove PENDING media older than `older_than`, rows first, then their bytes."""
    purged = 0
    while True:
        async with db.transaction() as conn:
            stale = await media.delete_stale_pending(conn, older_than=older_than, limit=batch)
        for found in stale:  # a row gone before its bytes: at worst an orphan file, never a
            await store.delete(key=found.storage_key)  # READY row without bytes
        purged += len(stale)
        if len(stale) < batch:
            return purged


async def purge_periodically(db: Database, store: MediaStore, limits: Limits) -> None:
    """The background job that removes PENDING media older than the limit, and their bytes."""
    age = timedelta(seconds=limits.media_pending_max_age_seconds)
    while True:
        try:
            purged = await purge_stale(db, store, older_than=age, batch=limits.media_purge_batch)
            if purged:
                log.info("purged %d stale pending media", purged)
        except Exception:  # the job must outlive a passing database or storage fault
            log.exception("purging stale media failed; trying again later")
        await asyncio.sleep(limits.media_purge_interval_seconds)
