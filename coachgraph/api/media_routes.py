"""The local media backend's HTTP side: signed, expiring, streamed uploads and downloads."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from coachgraph.api.resources import Resources
from coachgraph.media.local import LocalMediaStore, SignatureError, UploadRefused


class MediaFileResponse(FileResponse):
    """Reads 1 MiB per worker-thread hop instead of 64 KiB: far fewer hops per large video."""

    chunk_size = 1 << 20


def _refusal(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _local(request: Request) -> LocalMediaStore | None:
    resources: Resources = request.state.resources
    store = resources.media
    return store if isinstance(store, LocalMediaStore) else None


async def upload(request: Request) -> Response:
    """PUT the bytes of a ticket: exactly the signed size and type, cut off past the size."""
    store = _local(request)
    if store is None:
        return _refusal(404, "Media is stored in S3; use the ticket's URL")
    key = request.path_params["key"]
    q = request.query_params
    ctype, size, expires = q.get("ct", ""), q.get("size", ""), q.get("exp", "")
    try:
        store.path(key)
        store.verify(q.get("sig", ""), expires, "PUT", key, ctype, size)
    except SignatureError as err:
        return _refusal(403, str(err))
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
    try:
        stored = await store.receive(
            key=key, content_type=ctype, size_bytes=declared, chunks=request.stream()
        )
    except UploadRefused as err:
        return _refusal(err.status, err.message)
    return JSONResponse({"size": stored.size_bytes, "checksum": stored.checksum}, 201)


async def download(request: Request) -> Response:
    """GET (or HEAD) an object by signed URL; Range requests get 206 and the slice."""
    store = _local(request)
    if store is None:
        return _refusal(404, "Media is stored in S3")
    key = request.path_params["key"]
    q = request.query_params
    try:
        path = store.path(key)
        store.verify(q.get("sig", ""), q.get("exp", ""), "GET", key)
    except SignatureError as err:
        return _refusal(403, str(err))
    found = await store.stat(key=key)
    if found is None:
        return _refusal(404, "No such file")
    return MediaFileResponse(
        path,
        media_type=found.content_type,
        headers={"Cache-Control": "private, max-age=60", "X-Content-Type-Options": "nosniff"},
    )


routes = [
    Route("/media/upload/{key:path}", upload, methods=["PUT"]),
    Route("/media/files/{key:path}", download, methods=["GET", "HEAD"]),
]
