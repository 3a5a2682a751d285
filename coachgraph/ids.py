"""Relay global IDs: opaque, URL-safe strings that name a type and a row."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from coachgraph.errors import InvalidInput

TYPE_NAMES = frozenset(
    {"Coach", "Athlete", "Skill", "Program", "TrainingSession", "Media", "Questionnaire"}
)


@lru_cache(maxsize=65_536)  # every listed object names itself: skills repeat on every page
def to_global_id(type_name: str, raw_id: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{raw_id}".encode()).decode().rstrip("=")


def from_global_id(global_id: str, *, field: str = "id") -> tuple[str, int]:
    """Decode any global ID into (type name, row id); InvalidInput when malformed."""
    if not isinstance(global_id, str) or not 1 <= len(global_id) <= 64:
        raise InvalidInput("Malformed ID", field=field, code="INVALID_ID")
    try:
        text = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
        type_name, _, raw = text.partition(":")
        raw_id = int(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("Malformed ID", field=field, code="INVALID_ID") from None
    if type_name not in TYPE_NAMES or not 0 < raw_id < 2**63 or not raw.isdigit():
        raise InvalidInput("Malformed ID", field=field, code="INVALID_ID")
    return type_name, raw_id


def decode_id(global_id: str, expected: str, *, field: str = "id") -> int:
    """The row id of a global ID that must name `expected`; InvalidInput for any other."""
    type_name, raw_id = from_global_id(global_id, field=field)
    if type_name != expected:
        raise InvalidInput(f"Expected a {expected} ID", field=field, code="WRONG_ID_TYPE")
    return raw_id


# Positions (row ids, sample sequence numbers, search offsets) are PostgreSQL bigints
MAX_POSITION = 2**63 - 1


@lru_cache(maxsize=65_536)  # positions repeat across pages and requests
def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"c:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, field: str = "after", maximum: int = MAX_POSITION) -> int:
    """The position a cursor names, 0..`maximum`; InvalidInput when it is not one of ours."""
    try:
        if not 1 <= len(cursor) <= 64:
            raise ValueError(cursor)
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, raw = text.partition(":")
        if prefix != "c" or not (raw.isascii() and raw.isdigit()) or int(raw) > maximum:
            raise ValueError(cursor)
        return int(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("Malformed cursor", field=field, code="INVALID_CURSOR") from None
