"""The media contract, against the local backend and S3 (moto): the same tests, both stores."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from coachgraph.config import Limits
from coachgraph.ids import to_global_id
from coachgraph.media.model import valid_key
from coachgraph.media.purge import purge_stale
from tests.conftest import token_for
from tests.factories import Factory
from tests.media.conftest import MediaAPI

HEADS = {
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff\xe0",
    "image/webp": b"RIFF\x00\x00\x00\x00WEBP",
    "video/mp4": b"\x00\x00\x00\x18ftypmp42",
    "video/quicktime": b"\x00\x00\x00\x14ftypqt  ",
    "video/webm": b"\x1a\x45\xdf\xa3",
    "application/pdf": b"%PDF-1.7\n",
}

CREATE = """mutation($input: CreateUploadInput!) { createUpload(input: $input) {
  __typename ... on UploadTicket { method url headers fields expiresAt
    media { id status kind contentType sizeBytes url } }
  ... on UserError { message } ... on ValidationError { field code } } }"""
COMPLETE = """mutation($id: ID!) { completeUpload(mediaId: $id) {
  __typename ... on Media { id status checksum url sizeBytes }
  ... on UserError { message } ... on ValidationError { code } } }"""
DELETE = """mutation($id: ID!) { deleteMedia(id: $id) {
  __typename ... on Media { id } ... on UserError { message } } }"""


def payload(content_type: str, size: int) -> bytes:
    head = HEADS[content_type]
    return head + bytes((i * 7) % 251 for i in range(size - len(head)))


async def ticket(
    api: MediaAPI, owner: str, kind: str, ctype: str, size: int, token: str
) -> dict[str, Any]:
    body = await api.gql(
        CREATE,
        {"input": {"ownerId": owner, "kind": kind, "contentType": ctype, "sizeBytes": size}},
        token,
    )
    result: dict[str, Any] = body["data"]["createUpload"]
    return result


async def upload(
    api: MediaAPI, t: dict[str, Any], data: bytes, *, content_type: str | None = None
) -> httpx.Response:
    """Send bytes the way the ticket says: a PUT of the body, or a form POST (S3)."""
    if t["method"] == "PUT":
        headers = dict(t["headers"])
        headers.pop("Content-Length", None)  # httpx sets it from the body
        if content_type:
            headers["Content-Type"] = content_type
        return await api.http.put(t["url"], content=data, headers=headers)
    fields = dict(t["fields"])
    if content_type:
        fields["Content-Type"] = content_type
    return await api.http.post(t["url"], data=fields, files={"file": ("upload", data)})


async def media_rows(api: MediaAPI) -> int:
    count: int = await api.resources.db.pool.fetchval("SELECT count(*) FROM media")
    return count


def storage_key(t: dict[str, Any]) -> str:
    """The key a ticket uploads to (the server made it; the client never names one)."""
    if t["method"] == "PUT":
        return urlsplit(t["url"]).path.removeprefix("/media/upload/")
    key: str = t["fields"]["key"]
    return key


@pytest.mark.parametrize(
    ("owner_kind", "kind", "ctype", "size"),
    [
        ("coach", "AVATAR", "image/png", 40_000),
        ("athlete", "IMAGE", "image/jpeg", 3_000),
        ("program", "VIDEO", "video/mp4", 2_500_000),
        ("session", "DOCUMENT", "application/pdf", 70_000),
    ],
)
async def test_round_trip_per_kind(
    api: MediaAPI, factory: Factory, owner_kind: str, kind: str, ctype: str, size: int
) -> None:
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    program = await factory.program(coach.id, [])
    session = await factory.session(coach.id, athlete.id)
    owners = {
        "coach": (to_global_id("Coach", coach.id), token_for("coach", coach.id)),
        "athlete": (to_global_id("Athlete", athlete.id), token_for("athlete", athlete.id)),
        "program": (to_global_id("Program", program.id), token_for("coach", coach.id)),
        # an athlete sends a form-check document to its own session
        "session": (to_global_id("TrainingSession", session.id), token_for("athlete", athlete.id)),
    }
    owner, token = owners[owner_kind]
    data = payload(ctype, size)

    t = await ticket(api, owner, kind, ctype, size, token)
    assert t["__typename"] == "UploadTicket", t
    assert t["media"]["status"] == "PENDING" and t["media"]["url"] is None
    assert t["method"] == ("PUT" if api.backend == "local" else "POST")
    sent = await upload(api, t, data)
    assert sent.status_code in (200, 201, 204), sent.text

    done = (await api.gql(COMPLETE, {"id": t["media"]["id"]}, token))["data"]["completeUpload"]
    assert done["__typename"] == "Media", done
    assert done["status"] == "READY" and done["sizeBytes"] == size and done["checksum"]

    got = await api.http.get(done["url"])
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"].startswith(ctype)
    part = await api.http.get(done["url"], headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]

    field = {
        "coach": f'node(id: "{owner}") {{ ... on Coach {{ avatar {{ id url }} }} }}',
        "athlete": f'node(id: "{owner}") {{ ... on Athlete {{ avatar {{ id }} }} }}',
        "program": f'node(id: "{owner}") {{ ... on Program {{ media {{ id url }} }} }}',
        "session": f'node(id: "{owner}") {{ ... on TrainingSession {{ media {{ id }} }} }}',
    }[owner_kind]
    node = (await api.gql("{ " + field + " }", token=token))["data"]["node"]
    attached = node.get("avatar") or (node.get("media") or [None])[0]
    if kind == "IMAGE":  # an athlete's image is not its avatar
        assert node["avatar"] is None
    else:
        assert attached["id"] == t["media"]["id"]


async def test_download_url_expires_within_15_minutes(api: MediaAPI, factory: Factory) -> None:
    coach = await factory.coach()
    token = token_for("coach", coach.id)
    t = await ticket(api, to_global_id("Coach", coach.id), "AVATAR", "image/webp", 500, token)
    await upload(api, t, payload("image/webp", 500))
    done = (await api.gql(COMPLETE, {"id": t["media"]["id"]}, token))["data"]["completeUpload"]
    query = parse_qs(urlsplit(done["url"]).query)
    if api.backend == "local":
        import time

        assert 0 < int(query["exp"][0]) - time.time() <= 900
    else:
        assert 0 < int(query["X-Amz-Expires"][0]) <= 900


@pytest.mark.parametrize(
    ("kind", "ctype", "size", "code"),
    [
        ("AVATAR", "image/png", 10_000_001, "TOO_LARGE"),
        ("VIDEO", "video/mp4", 2_000_000_001, "TOO_LARGE"),
        ("DOCUMENT", "application/pdf", 0, "OUT_OF_RANGE"),
        ("IMAGE", "image/gif", 100, "UNSUPPORTED_CONTENT_TYPE"),
        ("DOCUMENT", "video/mp4", 100, "UNSUPPORTED_CONTENT_TYPE"),
    ],
)
async def test_refused_tickets_store_nothing(
    api: MediaAPI, factory: Factory, kind: str, ctype: str, size: int, code: str
) -> None:
    coach = await factory.coach()
    t = await ticket(
        api, to_global_id("Coach", coach.id), kind, ctype, size, token_for("coach", coach.id)
    )
    assert t["__typename"] == "ValidationError" and t["code"] == code, t
    assert await media_rows(api) == 0


async def test_avatar_only_on_people(api: MediaAPI, factory: Factory) -> None:
    coach = await factory.coach()
    program = await factory.program(coach.id, [])
    t = await ticket(
        api, to_global_id("Program", program.id), "AVATAR", "image/png", 100, token_for("admin")
    )
    assert t["code"] == "KIND_NOT_ALLOWED"
    assert await media_rows(api) == 0


async def test_actual_oversize_is_cut_off_and_stores_nothing(
    api: MediaAPI, factory: Factory
) -> None:
    coach = await factory.coach()
    token = token_for("coach", coach.id)
    t = await ticket(api, to_global_id("Coach", coach.id), "IMAGE", "image/png", 1_000, token)
    too_much = payload("image/png", 300_000)
    if api.backend == "local":
        # declared too large: refused from the header, before a byte is read
        sent = await upload(api, t, too_much)
        assert sent.status_code == 413

        # not declared (chunked): cut off once the body passes the ticket's size
        async def stream() -> Any:
            for i in range(0, len(too_much), 16_384):
                yield too_much[i : i + 16_384]

        sent = await api.http.put(t["url"], content=stream(), headers={"Content-Type": "image/png"})
        assert sent.status_code == 413
        name = storage_key(t).rsplit("/", 1)[1]
        objects = api.store.objects  # type: ignore[attr-defined]
        assert not list(objects.rglob(f"*{name}*"))  # neither the file nor a partial one
    else:
        # moto does not enforce POST policies (S3 and MinIO refuse this at the door);
        # completeUpload measures what was stored and throws it away
        await upload(api, t, too_much)
    done = (await api.gql(COMPLETE, {"id": t["media"]["id"]}, token))["data"]["completeUpload"]
    assert done["__typename"] == "ValidationError"
    assert done["code"] in ("NOT_UPLOADED", "SIZE_MISMATCH")
    assert await api.store.stat(key=storage_key(t)) is None


async def test_wrong_content_type_on_upload_is_refused(api: MediaAPI, factory: Factory) -> None:
    coach = await factory.coach()
    token = token_for("coach", coach.id)
    t = await ticket(api, to_global_id("Coach", coach.id), "IMAGE", "image/png", 500, token)
    sent = await upload(api, t, payload("image/png", 500), content_type="image/jpeg")
    if api.backend == "local":
        assert sent.status_code == 415
    done = (await api.gql(COMPLETE, {"id": t["media"]["id"]}, token))["data"]["completeUpload"]
    assert done["code"] in ("NOT_UPLOADED", "CONTENT_TYPE_MISMATCH")
    assert await api.store.stat(key=storage_key(t)) is None


async def test_bytes_that_are_not_what_they_claim(api: MediaAPI, factory: Factory) -> None:
    coach = await factory.coach()
    token = token_for("coach", coach.id)
    t = await ticket(api, to_global_id("Coach", coach.id), "VIDEO", "video/mp4", 2_000, token)
    sent = await upload(api, t, b"#!/bin/sh\n" + b"x" * 1_990)
    assert sent.status_code in (200, 201, 204)
    done = (await api.gql(COMPLETE, {"id": t["media"]["id"]}, token))["data"]["completeUpload"]
    assert done["code"] == "CONTENT_MISMATCH", done
    assert await api.store.stat(key=storage_key(t)) is None
    status = await api.resources.db.pool.fetchval("SELECT status::text FROM media")
    assert status == "PENDING"


async def test_forged_expired_and_reused_signatures(api: MediaAPI, factory: Factory) -> None:
    coach = await factory.coach()
    token = token_for("coach", coach.id)
    owner = to_global_id("Coach", coach.id)
    t = await ticket(api, owner, "IMAGE", "image/png", 500, token)
    other = await ticket(api, owner, "IMAGE", "image/png", 500, token)
    data = payload("image/png", 500)
    if api.backend == "local":
        parts = urlsplit(t["url"])
        forged = t["url"].replace("sig=", "sig=0")
        assert (await upload(api, {**t, "url": forged}, data)).status_code == 403
        # this ticket's signature on another ticket's key
        reused = t["url"].replace(parts.path, urlsplit(other["url"]).path)
        assert (await upload(api, {**t, "url": reused}, data)).status_code == 403
        # a larger size than signed
        bigger = t["url"].replace("size=500", "size=5000")
        assert (await upload(api, {**t, "url": bigger}, data)).status_code == 403
        expired = await api.store.upload_ticket(
            key=storage_key(t),
            content_type="image/png",
            size_bytes=500,
            expires_in=-1,
            base_url=api.url,
        )
        assert (await upload(api, {**t, "url": expired.url}, data)).status_code == 403
        assert await api.store.stat(key=storage_key(t)) is None
        assert await api.store.stat(key=storage_key(other)) is None
        # downloads: forged and expired links are refused
        assert (await upload(api, t, data)).status_code == 201
        good = await api.store.download_url(key=storage_key(t), expires_in=60, base_url=api.url)
        assert (await api.http.get(good)).status_code == 200
        assert (await api.http.get(good.replace("sig=", "sig=f"))).status_code == 403
        old = await api.store.download_url(key=storage_key(t), expires_in=-1, base_url=api.url)
        assert (await api.http.get(old)).status_code == 403
        # a ticket cannot replace bytes already uploaded
        assert (await upload(api, t, data)).status_code == 409
    else:
        # S3 checks the signed policy; we check the policy binds key, type and exact size
        policy = json.loads(base64.b64decode(t["fields"]["policy"]))
        conditions = policy["conditions"]
        assert {"key": storage_key(t)} in conditions
        assert {"Content-Type": "image/png"} in conditions
        assert ["content-length-range", 500, 500] in conditions
        assert storage_key(t) != storage_key(other)


@pytest.mark.parametrize(
    "path",
    [
        "/media/files/..%2f..%2fetc%2fpasswd",
        "/media/files/avatar/coach-1/..%2f..%2f..%2fjwt_secret",
        "/media/files/%2e%2e/%2e%2e/postgres/PG_VERSION",
        "/media/upload/..%2f..%2fescape.png",
    ],
)
async def test_path_traversal_is_refused(api: MediaAPI, path: str) -> None:
    response = await api.http.request(
        "PUT" if "upload" in path else "GET",
        f"{api.url}{path}?exp=9999999999&sig=x&ct=image/png&size=3",
        content=b"abc",
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code in (403, 404)
    for key in ("../x.png", "avatar/coach-1/../../x.png", "/etc/passwd", "avatar/coach-1/a.png"):
        assert not valid_key(key)


async def test_owner_the_viewer_may_not_write(api: MediaAPI, factory: Factory) -> None:
    coach, other_coach = await factory.coach(), await factory.coach()
    athlete, stranger = await factory.athlete(), await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    program = await factory.program(coach.id, [])
    session = await factory.session(coach.id, athlete.id)
    attempts = [
        (to_global_id("Coach", coach.id), "AVATAR", token_for("coach", other_coach.id)),
        (to_global_id("Athlete", athlete.id), "AVATAR", token_for("athlete", stranger.id)),
        (to_global_id("Athlete", athlete.id), "AVATAR", token_for("coach", coach.id)),
        (to_global_id("Program", program.id), "IMAGE", token_for("coach", other_coach.id)),
        (to_global_id("TrainingSession", session.id), "IMAGE", token_for("athlete", stranger.id)),
        (to_global_id("Coach", coach.id), "AVATAR", None),
    ]
    for owner, kind, token in attempts:
        t = await ticket(api, owner, kind, "image/png", 100, token)  # type: ignore[arg-type]
        assert t["__typename"] == "PermissionDeniedError", (owner, t)
    missing = await ticket(
        api, to_global_id("Coach", 99_999), "AVATAR", "image/png", 100, token_for("admin")
    )
    assert missing["__typename"] == "NotFoundError"
    skill = await factory.skill()
    wrong = await ticket(
        api, to_global_id("Skill", skill.id), "IMAGE", "image/png", 100, token_for("admin")
    )
    assert wrong["__typename"] == "ValidationError"
    assert await media_rows(api) == 0


async def test_deleting_media(api: MediaAPI, factory: Factory) -> None:
    coach, other = await factory.coach(), await factory.coach()
    token = token_for("coach", coach.id)
    t = await ticket(api, to_global_id("Coach", coach.id), "AVATAR", "image/png", 800, token)
    await upload(api, t, payload("image/png", 800))
    media_id = t["media"]["id"]
    assert (await api.gql(COMPLETE, {"id": media_id}, token))["data"]["completeUpload"][
        "status"
    ] == "READY"

    denied = await api.gql(DELETE, {"id": media_id}, token_for("coach", other.id))
    assert denied["data"]["deleteMedia"]["__typename"] == "PermissionDeniedError"
    assert await media_rows(api) == 1
    assert await api.store.stat(key=storage_key(t)) is not None

    done = await api.gql(DELETE, {"id": media_id}, token)
    assert done["data"]["deleteMedia"]["__typename"] == "Media"
    assert await media_rows(api) == 0
    assert await api.store.stat(key=storage_key(t)) is None
    # a missing id is NotFound for admins; others learn nothing about which ids exist
    again = await api.gql(DELETE, {"id": media_id}, token_for("admin"))
    assert again["data"]["deleteMedia"]["__typename"] == "NotFoundError"


async def test_purge_removes_stale_pending_media_and_bytes(api: MediaAPI, factory: Factory) -> None:
    coach = await factory.coach()
    token = token_for("coach", coach.id)
    owner = to_global_id("Coach", coach.id)
    stale = await ticket(api, owner, "IMAGE", "image/png", 300, token)
    fresh = await ticket(api, owner, "IMAGE", "image/png", 300, token)
    ready = await ticket(api, owner, "AVATAR", "image/png", 300, token)
    for t in (stale, fresh, ready):
        await upload(api, t, payload("image/png", 300))
    await api.gql(COMPLETE, {"id": ready["media"]["id"]}, token)
    pool = api.resources.db.pool
    await pool.execute(
        "UPDATE media SET created_at = now() - interval '25 hours' WHERE kind = 'AVATAR' OR storage_key = $1",
        storage_key(stale),
    )

    purged = await purge_stale(
        api.resources.db,
        api.store,
        older_than=timedelta(hours=24),
        batch=Limits().media_purge_batch,
    )

    assert purged == 1
    keys = {r["storage_key"] for r in await pool.fetch("SELECT storage_key FROM media")}
    assert keys == {storage_key(fresh), storage_key(ready)}
    assert await api.store.stat(key=storage_key(stale)) is None
    assert await api.store.stat(key=storage_key(fresh)) is not None
    assert await api.store.stat(key=storage_key(ready)) is not None
