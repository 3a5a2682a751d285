"""The live session page, GET /live/sessions/{id}: the session's heart rate (and power, when
there is some) as a live chart, with its status, heart-rate zones and latest values.

The page is static and holds nothing private: the coach or athlete opens it with a token in the
URL's fragment (`#token=<jwt>`, never sent to the server, so never logged) or pastes one into
it; its script (static/live/live.js) reads the session over HTTP and streams samples with the
`sessionMetrics(after:)` subscription over the app's WebSocket (graphql-transport-ws,
authorized by connection_init). After a dropped connection it subscribes again after the last
cursor it drew, so nothing is missed and nothing doubled. Every asset is served by the app
(uPlot vendored under /static/live/, see VENDORED.md there); the page's policy lets it load
nothing from elsewhere, as GraphiQL's does."""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from coachgraph.api.doors import Refusal
from coachgraph.api.graphiql import POLICY, _Assets
from coachgraph.errors import InvalidInput
from coachgraph.ids import decode_id, encode_cursor
from coachgraph.runtime import Resources

ASSETS = Path(__file__).parent / "static" / "live"
PREFIX = "/static/live"
VERSION = "1.6.32"  # uPlot; live.js and live.css change with it (the app's own)
PAGE_VERSION = "1"

_PAGE = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>coachgraph live session</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="{prefix}/uPlot.min.css?v={version}">
    <link rel="stylesheet" href="{prefix}/live.css?v={version}.{page_version}">
    <script src="{prefix}/uPlot.iife.min.js?v={version}" defer></script>
    <script src="{prefix}/live.js?v={version}.{page_version}" defer></script>
  </head>
  <body>
    <main id="live" data-session="{session}" data-endpoint="/graphql"
          data-start-cursor="{start}" data-max-heart-rate="{max_hr}">
      <header>
        <h1>Live session <span id="who"></span></h1>
        <span id="status" class="status">…</span>
        <span id="connection" class="connection">connecting</span>
      </header>
      <section class="now">
        <div class="reading"><span class="label">Heart rate</span>
          <span id="hr" class="value">&ndash;</span> <span class="unit">bpm</span>
          <span id="zone" class="zone"></span></div>
        <div class="reading" id="power-reading" hidden><span class="label">Power</span>
          <span id="power" class="value">&ndash;</span> <span class="unit">W</span></div>
      </section>
      <div id="chart"></div>
      <ol id="zones" class="zones"></ol>
      <form id="login" hidden>
        <label>Token <input id="token" name="token" autocomplete="off"></label>
        <button type="submit">Open</button>
      </form>
      <p id="problem" class="problem" role="alert" hidden></p>
    </main>
  </body>
</html>
"""


async def page(request: Request) -> Response:
    """The page of one session (its id checked for shape only: what the viewer may see is
    decided when the page's script asks with its token)."""
    resources: Resources = request.state.resources
    raw = request.path_params["id"]
    try:
        decode_id(raw, "TrainingSession")
    except InvalidInput:
        return Refusal(404, "No such training session", "NOT_FOUND").route_response()
    text = _PAGE.format(
        prefix=PREFIX,
        version=VERSION,
        page_version=PAGE_VERSION,
        session=html.escape(raw, quote=True),
        start=encode_cursor(0),
        max_hr=resources.settings.limits.live_page_max_heart_rate,
    )
    return HTMLResponse(
        text,
        headers={
            "Content-Security-Policy": POLICY,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


routes = [
    Route("/live/sessions/{id}", page, methods=["GET"]),
    Mount(PREFIX, app=_Assets(directory=ASSETS), name="live-assets"),
]
