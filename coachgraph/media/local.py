"""Media in a local directory, moved by the app's own routes under HMAC-signed, expiring URLs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from coachgraph.media.model import StoredObject, UploadTicket, valid_key

UPLOAD_PATH = "/media/upload/"
DOWNLOAD_PATH = "/media/files/"


class SignatureError(Exception):
    """A signed URL is forged, expired, or names another key."""


class UploadRefused(Exception):
    """The uploaded bytes break the ticket (too many, too few, wrong type, already there)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LocalMediaStore:
    """Objects under `root/objects/<key>`, each with a `<key>.meta` JSON beside it."""

    name = "local"

    def __init__(self, root: Path, *, secret: str, write_chunk: int = 1 << 20) -> None:
        self.root = root
        self.write_chunk = write_chunk  # bytes gathered before one write in a worker thread
        self.objects = root / "objects"
        self._key = hmac.new(secret.encode(), b"coachgraph media urls", hashlib.sha256).digest()

    async def start(self) -> None:
        await asyncio.to_thread(self.objects.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    # signing

    def sign(self, *parts: str) -> str:
        message = "\n".join(parts).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(self, signature: str, expires: str, *parts: str) -> None:
        """Refuse a forged or expired URL; `parts` are what its signature must cover."""
        if not expires.isdigit() or int(expires) < time.time():
            raise SignatureError("The link has expired")
        if not hmac.compare_digest(self.sign(*parts, expires), signature):
            raise SignatureError("The link's signature does not match")

    async def upload_ticket(
        self, *, key: str, content_type: str, size_bytes: int, expires_in: int, base_url: str
    ) -> UploadTicket:
        expires = int(time.time()) + expires_in
        query = {
            "ct": content_type,
            "size": str(size_bytes),
            "exp": str(expires),
            "sig": self.sign("PUT", key, content_type, str(size_bytes), str(expires)),
        }
        return UploadTicket(
            method="PUT",
            url=f"{base_url.rstrip('/')}{UPLOAD_PATH}{key}?{urlencode(query)}",
            headers={"Content-Type": content_type, "Content-Length": str(size_bytes)},
            fields={},
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    async def download_url(self, *, key: str, expires_in: int, base_url: str) -> str:
        expires = str(int(time.time()) + expires_in)
        query = urlencode({"exp": expires, "sig": self.sign("GET", key, expires)})
        return f"{base_url.rstrip('/')}{DOWNLOAD_PATH}{key}?{query}"

    # files

    def path(self, key: str) -> Path:
        """Where a key's bytes live; only keys of our own form are ever turned into paths."""
        if not valid_key(key):
            raise SignatureError("Not a media key")
        return self.objects / key

    async def receive(
        self,
        *,
        key: str,
        content_type: str,
        size_bytes: int,
        chunks: AsyncIterator[bytes],
    ) -> StoredObject:
        """Stream an upload to disk: cut off past `size_bytes`, kept only when it is whole."""
        final = self.path(key)
        if await asyncio.to_thread(final.exists):
            raise UploadRefused(409, "This ticket's object is already uploaded")
        await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
        partial = final.with_name(f".{final.name}.{os.getpid()}.{time.monotonic_ns()}.part")
        digest = hashlib.sha256()
        received = 0
        handle = await asyncio.to_thread(partial.open, "wb")

        def flush(buffer: bytearray) -> None:  # in a worker thread; sha256 releases the GIL
            digest.update(buffer)
            handle.write(buffer)

        # one buffer hashed and written in a thread while the loop receives the next one
        inflight: asyncio.Future[None] | None = None
        try:
            pending = bytearray()
            async for chunk in chunks:
                received += len(chunk)
                if received > size_bytes:
                    raise UploadRefused(413, f"The upload is larger than {size_bytes} bytes")
                pending += chunk
                if len(pending) >= self.write_chunk:
                    if inflight is not None:
                        await inflight
                    inflight = asyncio.ensure_future(asyncio.to_thread(flush, pending))
                    pending = bytearray()
            if inflight is not None:
                await inflight
                inflight = None
            if pending:
                await asyncio.to_thread(flush, pending)
            if received != size_bytes:
                raise UploadRefused(400, f"Expected {size_bytes} bytes, received {received}")
            await asyncio.to_thread(handle.close)
            try:  # a hard link never replaces: of two racing uploads, one wins whole
                await asyncio.to_thread(os.link, partial, final)
            except FileExistsError:
                raise UploadRefused(409, "This ticket's object is already uploaded") from None
            stored = StoredObject(received, content_type, f"sha256:{digest.hexdigest()}")
            meta = {"size": received, "content_type": content_type, "checksum": stored.checksum}
            await asyncio.to_thread(_write_meta, final, meta)
            return stored
        finally:
            if inflight is not None:  # refused mid-way: let the last write finish first
                await asyncio.gather(inflight, return_exceptions=True)
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(partial.unlink, missing_ok=True)

    async def stat(self, *, key: str) -> StoredObject | None:
        return await asyncio.to_thread(self._stat, key)

    def _stat(self, key: str) -> StoredObject | None:
        final = self.path(key)
        try:
            meta = json.loads(_meta_path(final).read_text())
            size = final.stat().st_size
        except FileNotFoundError:
            return None
        return StoredObject(size, meta["content_type"], meta["checksum"])

    async def read_head(self, *, key: str, length: int) -> bytes:
        def read() -> bytes:
            with self.path(key).open("rb") as f:
                return f.read(length)

        return await asyncio.to_thread(read)

    async def delete(self, *, key: str) -> None:
        final = self.path(key)

        def remove() -> None:
            final.unlink(missing_ok=True)
            _meta_path(final).unlink(missing_ok=True)

        await asyncio.to_thread(remove)


def _meta_path(final: Path) -> Path:
    return final.with_name(final.name + ".meta")


def _write_meta(final: Path, meta: dict[str, object]) -> None:
    _meta_path(final).write_text(json.dumps(meta))
