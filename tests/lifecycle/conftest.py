"""Real backends for erasure: both graph backends (networkx, FalkorDB over Bolt), Postgres
search, local and S3 (moto) media, Redis; shared with the suites that define them."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.graph.conftest import bolt_driver, bolt_url
from tests.live.conftest import redis_url
from tests.media.conftest import s3_endpoint
from tests.search.conftest import project, search_backend, sgql

__all__ = [
    "bolt_driver",
    "bolt_url",
    "project",
    "redis_url",
    "s3_endpoint",
    "search_backend",
    "sgql",
]


@pytest.fixture(autouse=True)
def forget_erased(app_resources: tuple[Any, Any]) -> Iterator[None]:
    """Ids restart with every test's TRUNCATE: an id erased here is someone else's next."""
    yield
    lifecycle = app_resources[1].lifecycle
    if lifecycle is not None:
        lifecycle.erased.ids.clear()
