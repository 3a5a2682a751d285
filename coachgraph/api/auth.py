"""Bearer tokens: HS256 JWTs naming a role and, for coaches and athletes, a global ID."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import MutableMapping
from typing import Any

import jwt

from coachgraph.engine import remember
from coachgraph.errors import InvalidInput, Unauthenticated
from coachgraph.ids import decode_id
from coachgraph.resolvers.policy import ANONYMOUS, Role, Viewer

ALGORITHM = "HS256"
_SUBJECT_TYPES = {Role.COACH: "Coach", Role.ATHLETE: "Athlete"}


def issue_token(secret: str, *, role: Role, subject: str | None, ttl_seconds: int) -> str:
    """A signed token for `role`; coaches and athletes need their own global ID as subject."""
    if role in _SUBJECT_TYPES:
        if subject is None:
            raise InvalidInput(f"A {role.value.lower()} token needs --subject", field="subject")
        decode_id(subject, _SUBJECT_TYPES[role], field="subject")
    now = int(time.time())
    claims = {"role": role.value, "iat": now, "exp": now + ttl_seconds}
    if subject:
        claims["sub"] = subject
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Tokens verified lately, by (secret, token): a client sends the same token with every
# request, and PyJWT's verification costs ~80 µs. Only successes are kept, and each is checked
# against its `exp` again when found; `iat` and `nbf` only ever pass later once they passed.
_VERIFIED: OrderedDict[tuple[str, str], Viewer] = OrderedDict()
VERIFIED_TOKENS = 4_096


def viewer_from_token(secret: str, token: str) -> Viewer:
    """The viewer a token names; Unauthenticated when it is forged, expired or malformed."""
    key = (secret, token)
    found = _VERIFIED.get(key)
    if found is not None:
        if found.expires_at is not None and found.expires_at <= time.time():
            del _VERIFIED[key]
            raise Unauthenticated("The token has expired")
        return found
    viewer = _verified(secret, token)
    remember(_VERIFIED, key, viewer, VERIFIED_TOKENS)
    return viewer


def _verified(secret: str, token: str) -> Viewer:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "role"]}
        )
        _check_claim_types(claims)
        role = Role(claims["role"])
        subject = claims.get("sub")
        coach_id = athlete_id = None
        if role is Role.COACH:
            coach_id = decode_id(str(subject), "Coach", field="sub")
        elif role is Role.ATHLETE:
            athlete_id = decode_id(str(subject), "Athlete", field="sub")
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("The token has expired") from None
    except (jwt.InvalidTokenError, ValueError, KeyError, TypeError, OverflowError, InvalidInput):
        raise Unauthenticated("The token is invalid") from None
    return Viewer(
        role=role,
        coach_id=coach_id,
        athlete_id=athlete_id,
        subject=subject,
        expires_at=float(claims["exp"]),
    )


def _check_claim_types(claims: dict[str, Any]) -> None:
    """RFC 7519 times are JSON numbers (PyJWT also takes numeric strings); names are strings."""
    for name in ("exp", "iat", "nbf"):
        if name not in claims:
            continue
        value = claims[name]
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a number")
    if type(claims["role"]) is not str or ("sub" in claims and type(claims["sub"]) is not str):
        raise ValueError("role and sub must be strings")


def viewer_from_header(secret: str, header: str | None) -> Viewer:
    """Anonymous without a header; otherwise the bearer token must be valid."""
    if not header:
        return ANONYMOUS
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Use 'Authorization: Bearer <token>'")
    return viewer_from_token(secret, token.strip())


DECODED_KEY = "coachgraph.bearer"  # where a request's decoded Authorization header is kept


def viewer_from_scope(scope: MutableMapping[str, Any], secret: str) -> Viewer:
    """The viewer a request's Authorization header names, decoded once per request however many
    layers ask (the rate limiter, then the gate); Unauthenticated when it is bad."""
    decoded = scope.get(DECODED_KEY)
    if decoded is None:
        header = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
        )
        try:
            decoded = viewer_from_header(secret, header)
        except Unauthenticated as err:
            decoded = err
        scope[DECODED_KEY] = decoded
    if isinstance(decoded, Unauthenticated):
        raise Unauthenticated(decoded.message)
    viewer: Viewer = decoded
    return viewer
