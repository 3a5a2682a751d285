"""One live app per media backend: local files behind signed routes, and S3 on moto's server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioboto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.media.model import MediaStore
from coachgraph.runtime import Resources
from coachgraph.stores.db import Database
from tests.servers import serve

BUCKET = "coachgraph-media"
S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint over HTTP (moto's server), bound to loopback on a port of the
    kernel's choosing, which the server then reports."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # returns once the socket is bound
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def make_bucket(endpoint: str) -> None:
    session = aioboto3.Session(region_name="us-east-1", **S3_CREDENTIALS)
    async with session.client("s3", endpoint_url=endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)


@dataclass
class MediaAPI:
    """The app served over real HTTP with one media backend, and a client that talks to it."""

    backend: str
    url: str
    http: httpx.AsyncClient
    resources: Resources

    @property
    def store(self) -> MediaStore:
        return self.resources.media

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
        )
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="session", params=["local", "s3"])
async def media_api(
    request: pytest.FixtureRequest, settings: Settings, tmp_root: Path
) -> AsyncIterator[MediaAPI]:
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        await make_bucket(endpoint)
        app_settings = settings.with_(
            s3_bucket=BUCKET, s3_endpoint_url=endpoint, aws_region="us-east-1", **S3_CREDENTIALS
        )
    else:
        app_settings = settings.with_(data_dir=tmp_root / "media-app")
    ready: list[Resources] = []

    async def keep(resources: Resources) -> None:
        ready.append(resources)

    app = create_app(app_settings, start_projector=False, on_ready=keep)
    async with serve(app) as url, httpx.AsyncClient(timeout=30) as http:
        yield MediaAPI(request.param, url, http, ready[0])


@pytest.fixture
async def api(media_api: MediaAPI, db: Database) -> MediaAPI:
    """The media app, with the shared database emptied for this test."""
    return media_api
