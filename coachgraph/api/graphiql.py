"""GraphiQL, served entirely by the app: the page at /graphql (for browsers) and its vendored
assets under /static/graphiql/ (static/graphiql/VENDORED.md names each release), so it
works with no network. Its policy lets the page load nothing from elsewhere."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

ASSETS = Path(__file__).parent / "static" / "graphiql"
PREFIX = "/static/graphiql"
VERSION = "3.8.3"  # graphiql; react and react-dom 18.2.0

# nothing from elsewhere: scripts and styles from this origin, fonts and icons inline
# (data: URIs in GraphiQL's CSS), requests to this origin and its WebSocket
POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # React and CodeMirror set style attributes
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)

_PAGE = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>coachgraph GraphiQL</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="{prefix}/graphiql.min.css?v={version}">
    <style>body {{ margin: 0; }} #graphiql {{ height: 100vh; }}</style>
    <script src="{prefix}/react.production.min.js?v={version}" defer></script>
    <script src="{prefix}/react-dom.production.min.js?v={version}" defer></script>
    <script src="{prefix}/graphiql.min.js?v={version}" defer></script>
    <script src="{prefix}/boot.js?v={version}" defer></script>
  </head>
  <body>
    <div id="graphiql" data-endpoint="{endpoint}">Loading GraphiQL…</div>
  </body>
</html>
"""


def page(endpoint: str = "/graphql") -> HTMLResponse:
    """The GraphiQL page, pointed at `endpoint` (HTTP, and the same path over WebSocket)."""
    html = _PAGE.format(prefix=PREFIX, version=VERSION, endpoint=endpoint)
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": POLICY,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


class _Assets(StaticFiles):
    """The vendored files, cacheable for a day (their URLs carry the version)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "public, max-age=86400"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


routes = [Mount(PREFIX, app=_Assets(directory=ASSETS), name="graphiql-assets")]
