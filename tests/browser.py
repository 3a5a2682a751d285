"""A real headless Chromium for the page tests (tests/test_graphiql.py,
tests/live/test_live_page.py): Debian's package, driven by Playwright without any browser
download, against the app served on the loopback."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright
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
