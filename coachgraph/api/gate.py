"""The gate in front of the GraphQL endpoint: authenticates each HTTP request once (its
token, and whether it names an erased athlete) and reads the body within its limits."""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from coachgraph.api import doors, wire
from coachgraph.api.auth import viewer_from_scope
from coachgraph.api.doors import Refusal
from coachgraph.config import Limits
from coachgraph.errors import Unauthenticated
from coachgraph.resolvers.policy import Viewer
from coachgraph.runtime import Resources

VIEWER_KEY = "coachgraph.viewer"
ERASED = "The athlete this token names was erased"


def erased(resources: Resources, viewer: Viewer) -> bool:
    """Whether the token names an athlete erased since it was signed."""
    found = resources.lifecycle
    return found is not None and viewer.athlete_id is not None and viewer.athlete_id in found.erased


def media_type(scope: Scope) -> str:
    return wire.response_type(wire.header_of(scope["headers"], b"accept"))


class Gate:
    """Authenticates HTTP requests once and refuses oversize bodies (rate limits: ratelimit.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)
        if refusal is not None:
            await refusal.graphql_response(media_type=media_type(scope))(scope, receive, send)
            return
        # the whole body (at most max_body_bytes, chunked or not) is read here, against the
        # read timeout and minimum rate, before the view parses it or touches the database
        limits: Limits = scope["state"]["resources"].settings.limits
        try:
            body = await doors.read_body(receive, limits, max_bytes=limits.max_body_bytes)
        except Refusal as err:
            await err.graphql_response(media_type=media_type(scope))(scope, receive, send)
            return
        except ClientDisconnect:
            return
        await self.app(scope, doors.replay(body, receive), send)

    def check(self, scope: Scope) -> Refusal | None:
        resources: Resources = scope["state"]["resources"]
        headers = {k: v for k, v in scope["headers"] if k in _WANTED}
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > resources.settings.limits.max_body_bytes:
            return Refusal(413, "Request body too large")
        try:  # decoded once per request: the rate limiter may have done it already
            viewer = viewer_from_scope(scope, resources.jwt_secret)
        except Unauthenticated as err:
            return Refusal(401, err.message, err.code)
        if erased(resources, viewer):
            return Refusal(401, ERASED, "UNAUTHENTICATED")
        scope[VIEWER_KEY] = viewer
        return None


_WANTED = frozenset({b"content-length"})
