"""GraphiQL works with no network: a real headless Chromium (Debian's package, driven by
Playwright without any browser download) loads /graphql from a real server while every
request to anything but the loopback is aborted, renders the editor, and runs a query with a
token typed into the headers editor."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, WebSocket
from starlette.applications import Starlette

from coachgraph.api.graphiql import ASSETS, PREFIX
from coachgraph.ids import to_global_id
from coachgraph.subscriptions.topics import status_topic
from tests.browser import LOOPBACK, offline_page
from tests.conftest import token_for
from tests.factories import Factory


@pytest.fixture
def live(served: tuple[str, Starlette]) -> str:
    return served[0]


async def type_into(page: Page, editor: Locator, text: str) -> None:
    """Replace what a CodeMirror editor holds."""
    await editor.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    await page.keyboard.insert_text(text)


async def test_graphiql_renders_and_queries_with_no_network(
    browser: Browser, live: str, factory: Factory
) -> None:
    await factory.coach(name="Offline Olga")
    context = await browser.new_context()
    offline = await offline_page(context)
    page, blocked, loaded, problems = (
        offline.page,
        offline.blocked,
        offline.loaded,
        offline.problems,
    )
    try:
        response = await page.goto(f"{live}/graphql", wait_until="load")
        assert response is not None and response.status == 200
        # the query editor (CodeMirror inside GraphiQL) and the headers editor's tab
        await page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=30_000)
        headers_tab = page.locator('.graphiql-editor-tools button[data-name="headers"]')
        await headers_tab.wait_for(timeout=10_000)
        assert blocked == [], f"the page tried the network: {blocked}"
        assert any(PREFIX in url for url in loaded)

        # act as an admin through the headers editor, then run the default query
        await headers_tab.click()
        editor = page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror")
        await editor.click()
        header = json.dumps({"Authorization": f"Bearer {token_for('admin')}"})
        await page.keyboard.insert_text(header)
        async with page.expect_response(lambda r: r.url.endswith("/graphql")) as answer:
            await page.locator(".graphiql-execute-button").click()
        sent = (await answer.value).request
        assert sent.headers.get("authorization") == f"Bearer {token_for('admin')}"
        result = page.locator(".graphiql-response .CodeMirror")
        await result.get_by_text("Offline Olga").wait_for(timeout=15_000)
        assert blocked == [] and problems == [], (blocked, problems)
    finally:
        await context.close()


async def test_the_page_forbids_anything_from_elsewhere(live: str) -> None:
    async with httpx.AsyncClient(base_url=live) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "https://" not in page.text and "http://" not in page.text
        for name in ("graphiql.min.js", "graphiql.min.css", "react.production.min.js", "boot.js"):
            asset = await client.get(f"{PREFIX}/{name}")
            assert asset.status_code == 200, name
            assert asset.content == (ASSETS / name).read_bytes()
            assert "max-age" in asset.headers["cache-control"]
        missing = await client.get(f"{PREFIX}/nothing.js")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "NOT_FOUND"


def test_the_vendored_files_are_minified_and_licensed() -> None:
    licences = {p.name for p in Path(ASSETS).iterdir() if p.name.startswith("LICENSE")}
    assert licences == {"LICENSE.graphiql.txt", "LICENSE.react.txt"}
    sizes = {p.name: p.stat().st_size for p in Path(ASSETS).iterdir()}
    assert sum(sizes.values()) < 2_500_000, sizes
    notes = (ASSETS / "VENDORED.md").read_text()
    for pinned in ("3.8.3", "18.2.0", "MIT"):
        assert pinned in notes


async def test_graphiql_subscribes_over_the_websocket_with_the_header(
    browser: Browser, served: tuple[str, Starlette], factory: Factory
) -> None:
    base, app = served
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    session = await factory.session(coach.id, athlete.id)
    sid = to_global_id("TrainingSession", session.id)
    admin = f"Bearer {token_for('admin')}"
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
    sockets: list[WebSocket] = []
    sent: list[str] = []

    def opened(socket: WebSocket) -> None:
        sockets.append(socket)
        socket.on("framesent", lambda frame: sent.append(str(frame)))

    page.on("websocket", opened)
    try:
        await page.goto(f"{base}/graphql")
        query_editor = page.locator(".graphiql-query-editor .CodeMirror")
        await query_editor.wait_for(timeout=30_000)
        headers = page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror")
        await type_into(page, headers, json.dumps({"Authorization": admin}))
        subscription = 'subscription { sessionUpdates(sessionId: "%s") { status } }' % sid
        await type_into(page, query_editor, subscription)
        await page.wait_for_timeout(1000)  # GraphiQL parses the edited document after a pause
        await page.locator(".graphiql-execute-button").click()

        resources = app.state.metrics.resources
        topic = status_topic(session.id)
        for _ in range(300):  # the subscription registers once connection_init is accepted
            if topic in resources.broker.fanout.topics:
                break
            await asyncio.sleep(0.05)
        assert topic in resources.broker.fanout.topics, sent
        async with httpx.AsyncClient(base_url=base) as client:
            started = await client.post(
                "/graphql",
                json={"query": 'mutation { startSession(id: "%s") { __typename } }' % sid},
                headers={"Authorization": admin},
            )
        assert started.json()["data"]["startSession"]["__typename"] == "TrainingSession"
        result = page.locator(".graphiql-response .CodeMirror")
        await result.get_by_text("LIVE").wait_for(timeout=15_000)
        assert [urlsplit(s.url).path for s in sockets] == ["/graphql"]
        init = next(json.loads(f) for f in sent if '"connection_init"' in f)
        assert init["payload"]["authorization"] == admin  # what the server authenticates
    finally:
        await context.close()
