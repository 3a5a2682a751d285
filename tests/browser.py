"""A real headless Chromium for the page tests (tests/test_graphiql.py,
tests/live/test_live_page.py): Debian's package, driven by Playwright without any browser
download, against the app served on the loopback."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright
from starlette.applications import Starlette

from coachgraph.app import create_app
from coachgraph.config import Settings
from tests.factories import Factory
from tests.servers import serve

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def chromium_path() -> str:
    """Debian's Chromium (`apt-get install chromium`; .ci/run installs it). Missing is a
    failure, not a skip: the offline pages are only checked by a real browser."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no Chromium on PATH: `apt-get install -y chromium` (as .ci/run does)")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def served(settings: Settings, factory: Factory) -> AsyncIterator[tuple[str, Starlette]]:
    """The app on a free loopback port: its base URL, and the app."""
    app = create_app(settings, start_projector=False)
    async with serve(app) as base:
        yield base, app


@dataclass
class OfflinePage:
    """A page that may reach the loopback only, and what it tried."""

    page: Page
    blocked: list[str] = field(default_factory=list)  # URLs off the loopback, refused
    loaded: list[str] = field(default_factory=list)  # URLs served (loopback, data:, blob:)
    problems: list[str] = field(default_factory=list)  # page errors and console errors


async def offline_page(context: BrowserContext) -> OfflinePage:
    """A new page of `context` whose every request off the loopback (data: and blob: URLs
    aside) is refused as if the network were down and noted, with its page and console errors
    noted too."""
    blocked: list[str] = []
    loaded: list[str] = []

    async def only_loopback(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or (urlsplit(url).hostname or "") in LOOPBACK:
            loaded.append(url)
            await route.continue_()
        else:
            blocked.append(url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_loopback)
    found = OfflinePage(await context.new_page(), blocked, loaded)
    found.page.on("pageerror", lambda err: found.problems.append(f"page error: {err}"))
    found.page.on(
        "console",
        lambda msg: (
            found.problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error"
            else None
        ),
    )
    return found
