"""The live session page in a real headless Chromium (Debian's, driven by Playwright, every
request to anything but the loopback aborted): it charts what recordMetrics pushes, and when
the test drops its WebSocket and keeps it down while more samples are recorded, the page
resumes after its last cursor and shows them, with no gap and nothing twice. A screenshot is
kept at artifacts/live-session.png (git-ignored; CI keeps it as an artifact)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Browser, Page, WebSocketRoute
from starlette.applications import Starlette

from coachgraph.api.live_page import ASSETS, PREFIX, VERSION
from coachgraph.ids import to_global_id
from tests.browser import LOOPBACK, offline_page
from tests.conftest import token_for
from tests.factories import Factory
from tests.live.conftest import live_session

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts"

RECORD = """mutation($id: ID!, $samples: [MetricSampleInput!]!) {
  recordMetrics(sessionId: $id, samples: $samples) { __typename ... on RecordMetrics { lastCursor } } }"""


class Feed:
    """Samples pushed through recordMetrics, a second apart, heart rate with power every
    third second; remembers what it sent."""

    def __init__(self, base: str, session_gid: str, start: datetime) -> None:
        self.base = base
        self.sid = session_gid
        self.next_at = start
        self.sent: list[tuple[str, float]] = []

    async def push(self, seconds: int) -> None:
        batch: list[dict[str, Any]] = []
        for _ in range(seconds):
            i = len(self.sent)
            at = self.next_at.isoformat()
            hr = 120 + (i * 5) % 50
            batch.append({"kind": "HEART_RATE", "at": at, "value": hr})
            self.sent.append(("HEART_RATE", hr))
            if i % 3 == 0:
                batch.append({"kind": "POWER", "at": at, "value": 180 + i % 90})
                self.sent.append(("POWER", 180 + i % 90))
            self.next_at += timedelta(seconds=1)
        async with httpx.AsyncClient(base_url=self.base) as client:
            answer = await client.post(
                "/graphql",
                json={"query": RECORD, "variables": {"id": self.sid, "samples": batch}},
                headers={"Authorization": f"Bearer {token_for('admin')}"},
            )
        assert answer.json()["data"]["recordMetrics"]["__typename"] == "RecordMetrics", answer.text

    @property
    def last_heart_rate(self) -> float:
        return next(v for k, v in reversed(self.sent) if k == "HEART_RATE")


async def received(page: Page, count: int) -> None:
    await page.wait_for_function(
        f"() => window.coachgraphLive && window.coachgraphLive.received >= {count}",
        timeout=20_000,
    )


async def test_the_live_page_charts_samples_and_resumes_after_a_drop(
    browser: Browser, served: tuple[str, Starlette], factory: Factory
) -> None:
    base, _ = served
    session = await live_session(factory)
    await factory.db.pool.execute(
        "UPDATE training_sessions SET started_at = now() - interval '10 minutes' WHERE id = $1",
        session.id,
    )
    sid = to_global_id("TrainingSession", session.id)
    feed = Feed(base, sid, datetime.now(UTC) - timedelta(minutes=5))
    await feed.push(30)  # before the page opens: drawn from the start cursor

    context = await browser.new_context(viewport={"width": 1200, "height": 760})
    offline = await offline_page(context)
    page, blocked, problems = offline.page, offline.blocked, offline.problems
    # every WebSocket of the page goes through here: the test can drop it and keep it down
    sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []
    down = False
    refused = 0

    async def through(ws: WebSocketRoute) -> None:
        nonlocal refused
        if down:
            refused += 1
            await ws.close(code=1011, reason="the test keeps the network down")
            return
        sockets.append((ws, ws.connect_to_server()))

    await page.route_web_socket("**/graphql", through)
    try:
        token = token_for("athlete", session.athlete_id)
        response = await page.goto(f"{base}/live/sessions/{sid}#token={token}")
        assert response is not None and response.status == 200
        await received(page, len(feed.sent))
        assert await page.locator("#status").text_content() == "LIVE"
        assert "#token" not in page.url  # the token leaves the address bar

        await feed.push(20)  # live, over the open socket
        await received(page, len(feed.sent))
        assert await page.locator("#hr").text_content() == str(round(feed.last_heart_rate))
        assert await page.locator("#power-reading").is_visible()

        # drop the socket and keep the network down while more samples are recorded
        down = True
        before = len(feed.sent)
        for page_side, server_side in sockets:
            await page_side.close(code=1011, reason="dropped by the test")
            await server_side.close()
        await page.wait_for_function(
            "() => document.getElementById('live').dataset.connection !== 'live'"
        )
        await feed.push(25)
        await asyncio.sleep(1.0)
        state = await page.evaluate("() => window.coachgraphLive")
        assert state["received"] == before and refused >= 1, (state["received"], refused)

        down = False  # back: the page subscribes after its last cursor
        await received(page, len(feed.sent))
        await feed.push(5)  # and the live tail runs again
        await received(page, len(feed.sent))
        await page.wait_for_timeout(300)  # the chart draws on the next animation frame

        state = await page.evaluate("() => window.coachgraphLive")
        stored = [
            r["seq"]
            for r in await factory.db.pool.fetch(
                "SELECT seq FROM metric_samples WHERE session_id = $1 ORDER BY seq", session.id
            )
        ]
        assert state["seqs"] == stored == list(range(1, len(feed.sent) + 1))  # no gap, no twice
        assert state["connects"] >= 2 and len(sockets) == 2
        assert await page.locator("#hr").text_content() == str(round(feed.last_heart_rate))
        zone = await page.locator("#zone").text_content()
        assert zone and zone.startswith("Z")
        assert await page.locator("#chart canvas").count() == 1
        assert await page.locator("#zones li").count() == 5
        assert blocked == [] and problems == [], (blocked, problems)

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "live-session.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

        # the end of the session: shown, and the page stops reconnecting
        async with httpx.AsyncClient(base_url=base) as client:
            ended = await client.post(
                "/graphql",
                json={"query": 'mutation { endSession(id: "%s") { __typename } }' % sid},
                headers={"Authorization": f"Bearer {token_for('admin')}"},
            )
        assert ended.json()["data"]["endSession"]["__typename"] == "TrainingSession"
        await page.wait_for_function(
            "() => document.getElementById('live').dataset.status === 'COMPLETED'",
            timeout=15_000,
        )
    finally:
        await context.close()


async def test_the_page_is_self_contained(served: tuple[str, Starlette], factory: Factory) -> None:
    base, _ = served
    session = await live_session(factory)
    async with httpx.AsyncClient(base_url=base) as client:
        page = await client.get(f"/live/sessions/{to_global_id('TrainingSession', session.id)}")
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "https://" not in page.text and "http://" not in page.text
        for name in ("uPlot.iife.min.js", "uPlot.min.css", "live.js", "live.css"):
            asset = await client.get(f"{PREFIX}/{name}")
            assert asset.status_code == 200, name
            assert asset.content == (ASSETS / name).read_bytes()
        missing = await client.get("/live/sessions/not-an-id")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_the_chart_library_is_pinned_and_licensed() -> None:
    notes = (ASSETS / "VENDORED.md").read_text()
    assert VERSION in notes and "MIT" in notes
    assert f"(v{VERSION})" in (ASSETS / "uPlot.iife.min.js").read_text()[:100]
    assert "MIT License" in (ASSETS / "LICENSE.uplot.txt").read_text()


async def test_a_stranger_sees_the_refusal_and_no_samples(
    browser: Browser, served: tuple[str, Starlette], factory: Factory
) -> None:
    base, _ = served
    session = await live_session(factory)
    stranger = await factory.athlete()
    context = await browser.new_context()
    await context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if (urlsplit(route.request.url).hostname or "") in LOOPBACK
            else route.abort("internetdisconnected")
        ),
    )
    page = await context.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        sid = to_global_id("TrainingSession", session.id)
        await page.goto(f"{base}/live/sessions/{sid}#token={token_for('athlete', stranger.id)}")
        problem = page.locator("#problem")
        await problem.wait_for(state="visible", timeout=15_000)
        assert await problem.text_content() == "You may not see this session"
        assert await page.locator("#login").is_visible()  # a token of someone else is asked for
        assert sockets == []
        assert await page.evaluate("() => window.coachgraphLive.received") == 0
    finally:
        await context.close()
