"""The local media backend's HTTP side: signed, expiring, streamed uploads and downloads."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from coachgraph.api import doors
from coachgraph.api.doors import Refusal
from coachgraph.media.local import LocalMediaStore, SignatureError, UploadRefused
from coachgraph.runtime import Resources


def _refusal(status: int, message: str) -> JSONResponse:
    """Every refusal is JSON with a code (BAD_USER_INPUT unless the status says otherwise)."""
    return Refusal.of_status(status, message).route_response()


def _local(request: Request) -> LocalMediaStore | None:
    resources: Resources = request.state.resources
    store = resources.media
    return store if isinstance(store, LocalMediaStore) else None


def _verified(
    request: Request, method: str, *signed: str
) -> tuple[LocalMediaStore, str, Path] | Response:
    """The local store, the key and its path, once the URL's signature is found to cover the
    method, the key and `signed`, and not to have expired; otherwise the refusal."""
    store = _local(request)
    if store is None:
        return _refusal(404, "Media is stored in S3, not served here")
    key = request.path_params["key"]
    q = request.query_params
    try:
        path = store.path(key)
        store.verify(q.get("sig", ""), q.get("exp", ""), method, key, *signed)
    except SignatureError as err:
        return _refusal(403, str(err))
    return store, key, path


async def upload(request: Request) -> Response:
    """PUT the bytes of a ticket: exactly the signed size and type, cut off past the size."""
    limits = request.state.resources.settings.limits
    ctype, size = request.query_params.get("ct", ""), request.query_params.get("size", "")
    verified = _verified(request, "PUT", ctype, size)
    if isinstance(verified, Response):
        return verified
    store, key, _ = verified
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != ctype:
        return _refusal(415, f"Send the file as Content-Type: {ctype}")
    declared = int(size)
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) != declared):
        # refused before a byte is read: declared oversize never reaches the disk
        return _refusal(
            413 if length.isdigit() and int(length) > declared else 400,
            f"The ticket is for exactly {declared} bytes",
        )
    # the store cuts off past the declared size; the door bounds how slowly the bytes may come
    chunks = doors.body_chunks(request.receive, limits)
    try:
        stored = await store.receive(
            key=key, content_type=ctype, size_bytes=declared, chunks=chunks
        )
    except UploadRefused as err:
        return _refusal(err.status, err.message)
    except Refusal as err:
        return err.route_response()
    except ClientDisconnect:  # nobody is left to read the answer; the partial file is gone
        return _refusal(400, "The client left before the upload was complete")
    return JSONResponse({"size": stored.size_bytes, "checksum": stored.checksum}, 201)


async def download(request: Request) -> Response:
    """GET (or HEAD) an object by signed URL; Range requests get 206 and the slice."""
    verified = _verified(request, "GET")
    if isinstance(verified, Response):
        return verified
    store, key, path = verified
    found = await store.stat(key=key)
    if found is None:
        return _refusal(404, "No such file")
    limits = request.state.resources.settings.limits
    cache = f"private, max-age={limits.media_cache_max_age_seconds}"
    response = FileResponse(
        path,
        media_type=found.content_type,
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )
    # media_io_chunk_bytes (1 MiB) per worker-thread hop instead of Starlette's 64 KiB: far
    # fewer hops per large video
    response.chunk_size = limits.media_io_chunk_bytes
    return response


routes = [
    Route("/media/upload/{key:path}", upload, methods=["PUT"]),
    Route("/media/files/{key:path}", download, methods=["GET", "HEAD"]),
]
