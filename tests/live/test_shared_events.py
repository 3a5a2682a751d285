"""Watchers of one session share each event: executed once by the engine, encoded once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.ids import encode_cursor, to_global_id
from coachgraph.runtime import Resources
from tests.conftest import token_for
from tests.factories import Factory
from tests.live.conftest import WSClient, live_session
from tests.live.test_subscriptions import METRICS, Replica, record
from tests.servers import serve

WATCHERS = 3
SAMPLES = 20

# the shared path is the production one: a differential run would execute every event twice
pytestmark = pytest.mark.usefixtures("one_path")


async def test_watchers_of_a_session_share_each_event(
    settings: Settings, factory: Factory, tmp_root: Path
) -> None:
    ready: list[Resources] = []

    async def keep(resources: Resources) -> None:
        ready.append(resources)

    app = create_app(
        settings.with_(data_dir=tmp_root / "shared-events"), start_projector=False, on_ready=keep
    )
    engine = app.state.schema.engine
    session = await live_session(factory)
    session_id = to_global_id("TrainingSession", session.id)
    token = token_for("coach", session.coach_id)
    async with serve(app) as url:
        watchers = [await WSClient.connect(url, token) for _ in range(WATCHERS)]
        for watcher in watchers:
            assert (await watcher.ack())["type"] == "connection_ack"
            await watcher.subscribe(METRICS, {"id": session_id, "after": encode_cursor(0)})
        before = engine.counts["shared event"]
        async with httpx.AsyncClient() as http:
            await record(http, Replica(url, ready[0]), session.id, SAMPLES, token)
        received = []
        for watcher in watchers:
            received.append([(await watcher.recv())["payload"] for _ in range(SAMPLES)])
            await watcher.close()
    # every watcher got the same events, in cursor order
    assert received[0] == received[1] == received[2]
    cursors = [p["data"]["sessionMetrics"]["cursor"] for p in received[0]]
    assert cursors == [encode_cursor(i) for i in range(1, SAMPLES + 1)]
    # each event ran once: every other watcher was handed the first one's result
    assert engine.counts["shared event"] - before == (WATCHERS - 1) * SAMPLES
