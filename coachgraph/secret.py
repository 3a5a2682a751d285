"""The key that signs bearer tokens: from the settings, else kept in the data dir."""

from __future__ import annotations

import secrets
from pathlib import Path

from coachgraph.config import Settings, SettingsError

SECRET_FILE = "jwt_secret"


def resolve_secret(settings: Settings, *, create: bool = False) -> str:
    """COACHGRAPH_JWT_SECRET, else the secret stored in the data dir (made when `create`)."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path = Path(settings.data_dir) / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise SettingsError(
            "COACHGRAPH_JWT_SECRET is not set and the data dir holds no secret; "
            "set it, or run `coachgraph serve --demo` once to generate one"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(secret)
    return secret
