"""The purge job as the app runs it: a loop that, turn after turn, removes PENDING media older
than the limit with their bytes, and leaves fresh uploads and finished media alone."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from coachgraph.ids import to_global_id
from coachgraph.media.purge import purge_periodically
from tests.conftest import token_for
from tests.factories import Factory
from tests.media.conftest import MediaAPI
from tests.media.test_media_contract import COMPLETE, payload, storage_key, ticket, upload
from tests.servers import until


async def test_purge_loop_removes_stale_pending_media_and_their_bytes(
    api: MediaAPI, factory: Factory
) -> None:
    coach = await factory.coach()
    token = token_for("coach", coach.id)
    owner = to_global_id("Coach", coach.id)
    pool = api.resources.db.pool

    async def uploaded(kind: str) -> str:
        made = await ticket(api, owner, kind, "image/png", 300, token)
        response = await upload(api, made, payload("image/png", 300))
        assert response.status_code < 300, response.text
        return storage_key(made) if kind else ""

    async def backdate(key: str) -> None:  # older than the limit, as if uploaded two hours ago
        await pool.execute(
            "UPDATE media SET created_at = now() - interval '2 hours' WHERE storage_key = $1", key
        )

    async def gone(key: str) -> bool:
        row = await pool.fetchval("SELECT 1 FROM media WHERE storage_key = $1", key)
        return row is None and await api.store.stat(key=key) is None

    stale, fresh = await uploaded("IMAGE"), await uploaded("IMAGE")
    ready_ticket = await ticket(api, owner, "AVATAR", "image/png", 300, token)
    await upload(api, ready_ticket, payload("image/png", 300))
    done = await api.gql(COMPLETE, {"id": ready_ticket["media"]["id"]}, token)
    assert done["data"]["completeUpload"]["__typename"] == "Media", done
    ready = storage_key(ready_ticket)
    for key in (stale, ready):
        await backdate(key)
    for key in (stale, fresh, ready):
        assert await api.store.stat(key=key) is not None

    limits = dataclasses.replace(
        api.resources.settings.limits,
        media_pending_max_age_seconds=3600,
        media_purge_interval_seconds=1,
    )
    job = asyncio.create_task(purge_periodically(api.resources.db, api.store, limits))
    try:
        await until(lambda: gone(stale), "the first turn to purge the stale upload")
        # a later turn finds what went stale since
        later = await uploaded("IMAGE")
        await backdate(later)
        await until(lambda: gone(later), "a later turn to purge the newly stale upload")
        assert not job.done(), "the loop ended"
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
    keys = {r["storage_key"] for r in await pool.fetch("SELECT storage_key FROM media")}
    assert keys == {fresh, ready}  # fresh (PENDING, young) and READY (old) stay
    statuses = dict(await pool.fetch("SELECT storage_key, status::text FROM media"))
    assert statuses == {fresh: "PENDING", ready: "READY"}
    for key in (fresh, ready):
        assert await api.store.stat(key=key) is not None  # their bytes too
