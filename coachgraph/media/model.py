"""What every media backend offers, and the rules on kinds, types, sizes and keys."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from coachgraph.config import Limits
from coachgraph.errors import InvalidInput

# kind -> content types it accepts, each with the file extension its key gets
CONTENT_TYPES: dict[str, dict[str, str]] = {
    "AVATAR": {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"},
    "IMAGE": {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"},
    "VIDEO": {"video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm"},
    "DOCUMENT": {"application/pdf": "pdf"},
}
# the owners media may belong to; avatars only to people
OWNER_KINDS: dict[str, frozenset[str]] = {
    "Coach": frozenset(CONTENT_TYPES),
    "Athlete": frozenset(CONTENT_TYPES),
    "Program": frozenset({"IMAGE", "VIDEO", "DOCUMENT"}),
    "TrainingSession": frozenset({"IMAGE", "VIDEO", "DOCUMENT"}),
}
SNIFF_BYTES = 16
KEY_PATTERN = re.compile(r"^[a-z]+/[a-z]+-[0-9]{1,19}/[0-9a-f]{32}\.[a-z0-9]{2,4}$")


def max_bytes(kind: str, limits: Limits) -> int:
    """The size limit of a media kind."""
    return {
        "AVATAR": limits.max_avatar_bytes,
        "IMAGE": limits.max_image_bytes,
        "VIDEO": limits.max_video_bytes,
        "DOCUMENT": limits.max_document_bytes,
    }[kind]


def check_upload(
    *, owner_type: str, kind: str, content_type: str, size_bytes: int, limits: Limits
) -> str:
    """Refuse what a kind does not accept; return the normalised content type."""
    if kind not in OWNER_KINDS[owner_type]:
        raise InvalidInput(
            f"A {owner_type} cannot own {kind} media", field="kind", code="KIND_NOT_ALLOWED"
        )
    ctype = content_type.strip().lower()
    if ctype not in CONTENT_TYPES[kind]:
        allowed = ", ".join(CONTENT_TYPES[kind])
        raise InvalidInput(
            f"{kind} accepts {allowed}", field="contentType", code="UNSUPPORTED_CONTENT_TYPE"
        )
    limit = max_bytes(kind, limits)
    if not 1 <= size_bytes <= limit:
        raise InvalidInput(
            f"sizeBytes must be between 1 and {limit} for {kind}",
            field="sizeBytes",
            code="TOO_LARGE" if size_bytes > limit else "OUT_OF_RANGE",
        )
    return ctype


def new_key(*, kind: str, owner_type: str, owner_id: int, content_type: str) -> str:
    """A fresh storage key; the server makes every key, so none carries client text."""
    ext = CONTENT_TYPES[kind][content_type]
    return f"{kind.lower()}/{owner_type.lower()}-{owner_id}/{uuid.uuid4().hex}.{ext}"


def valid_key(key: str) -> bool:
    """Whether `key` is of the form new_key makes (no traversal, no other characters)."""
    return KEY_PATTERN.fullmatch(key) is not None


def sniff_matches(content_type: str, head: bytes) -> bool:
    """Whether the leading bytes of a file are what its content type claims."""
    if content_type == "image/jpeg":
        return head[:3] == b"\xff\xd8\xff"
    if content_type == "image/png":
        return head[:8] == b"\x89PNG\r\n\x1a\n"
    if content_type == "image/webp":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    if content_type in ("video/mp4", "video/quicktime"):
        # ISO base media: a box size, then a box type; files start with ftyp (or, for old
        # QuickTime, a moov/mdat/wide/free atom)
        return head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")
    if content_type == "video/webm":
        return head[:4] == b"\x1a\x45\xdf\xa3"
    if content_type == "application/pdf":
        return head[:5] == b"%PDF-"
    return False


@dataclass(frozen=True, slots=True)
class UploadTicket:
    """How a client sends the bytes: `method` to `url` with these headers or form fields."""

    method: str
    url: str
    headers: dict[str, str]
    fields: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class StoredObject:
    size_bytes: int
    content_type: str | None
    checksum: str


class MediaStore(Protocol):
    """Where media bytes live. Clients move bytes straight to and from it, by signed URL."""

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def upload_ticket(
        self, *, key: str, content_type: str, size_bytes: int, expires_in: int, base_url: str
    ) -> UploadTicket:
        """A signed upload of exactly `size_bytes` of `content_type` to `key`."""
        ...

    async def stat(self, *, key: str) -> StoredObject | None:
        """The stored object's size, type and checksum; None when nothing is stored."""
        ...

    async def read_head(self, *, key: str, length: int) -> bytes:
        """The first `length` bytes of a stored object."""
        ...

    async def download_url(self, *, key: str, expires_in: int, base_url: str) -> str:
        """A signed URL that serves the object (with Range) until it expires."""
        ...

    async def delete(self, *, key: str) -> None:
        """Remove the object; removing a missing one is not an error."""
        ...
