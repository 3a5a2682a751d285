"""The typed per-request context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field

from coachgraph.config import Settings
from coachgraph.graph.model import GraphStore
from coachgraph.leaderboards.model import Leaderboards
from coachgraph.leaderboards.postgres import PostgresLeaderboards
from coachgraph.lifecycle.audit import AuditBatch
from coachgraph.lifecycle.erasure import Stores
from coachgraph.media.model import MediaStore
from coachgraph.resolvers.loaders import Loaders
from coachgraph.resolvers.policy import Viewer
from coachgraph.search.model import SearchIndex
from coachgraph.stores.db import Database
from coachgraph.subscriptions.broker import Broker


@dataclass
class Context:
    """The viewer, the backends and fresh DataLoaders: one per request, never shared."""

    settings: Settings
    db: Database
    viewer: Viewer
    graph: GraphStore
    media: MediaStore
    broker: Broker
    search: SearchIndex
    connection_params: dict[str, object] | None = None  # graphql-ws connection_init payload
    secret: str = ""  # WebSocket only: to check the token that connection_init carries
    base_url: str = ""  # where this request reached the API: signed local media URLs start here
    leaderboards: Leaderboards | None = None  # None: computed in Postgres
    lifecycle: Stores | None = None  # erasure, export and audit reach every store through it
    audit: AuditBatch | None = None  # the request's audit events, written once at its end
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.db, self.viewer)
        if self.leaderboards is None:
            self.leaderboards = PostgresLeaderboards(self.db)

    @property
    def boards(self) -> Leaderboards:
        """The leaderboard backend (the Postgres one unless the app was given another)."""
        assert self.leaderboards is not None  # set in __post_init__
        return self.leaderboards
