"""POST /ingest/sessions/{id}/files: FIT, TCX and GPX files (made here, see tests/wearables.py)
store exactly the samples they hold, as NDJSON would (cursors, COPY, all or nothing); a LIVE or
a COMPLETED session takes them; a corrupt or foreign file stores nothing and names the problem."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.ids import decode_cursor, to_global_id
from coachgraph.stores import retention, sessions
from coachgraph.stores.records import SessionRecord
from tests.conftest import token_for
from tests.factories import Factory
from tests.live.conftest import live_session
from tests.servers import serve
from tests.wearables import Point, fit_file, gpx_file, tcx_file

FORMATS: dict[str, tuple[Callable[[list[Point]], bytes], str]] = {
    "FIT": (fit_file, "application/vnd.ant.fit"),
    # big-endian records, and times in compressed timestamp headers, as many devices write
    "FIT-compressed": (
        lambda points: fit_file(points, big_endian=True, compressed=True),
        "application/vnd.ant.fit",
    ),
    "TCX": (tcx_file, "application/vnd.garmin.tcx+xml"),
    "GPX": (gpx_file, "application/gpx+xml"),
}


def ride(start: datetime, seconds: int) -> list[Point]:
    """A ride at 1 Hz: heart rate throughout, power with dropouts, cadence, speed; the last
    point holds nothing (a paused sensor), so stores nothing."""
    points = [
        Point(
            start + timedelta(seconds=i),
            heart_rate=110 + (i * 7) % 60,
            power=None if i % 9 == 4 else 150 + (i * 13) % 200,
            cadence=80 + i % 15,
            speed=None if i % 11 == 0 else round(7.5 + (i % 40) * 0.025, 3),
        )
        for i in range(seconds)
    ]
    return [*points, Point(start + timedelta(seconds=seconds))]


def expected(points: list[Point]) -> list[tuple[str, datetime, float]]:
    return [s for p in points for s in p.samples()]


async def post_file(
    client: httpx.AsyncClient,
    session_id: int,
    body: bytes,
    token: str | None,
    content_type: str | None = "application/octet-stream",
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type:
        headers["Content-Type"] = content_type
    return await client.post(
        f"/ingest/sessions/{to_global_id('TrainingSession', session_id)}/files",
        content=body,
        headers=headers,
    )


async def rows(factory: Factory) -> list[tuple[int, str, datetime, float]]:
    found = await factory.db.pool.fetch(
        "SELECT seq, kind::text AS kind, at, value FROM metric_samples ORDER BY seq"
    )
    return [(r["seq"], r["kind"], r["at"], r["value"]) for r in found]


async def completed_session(factory: Factory, started: datetime, ended: datetime) -> SessionRecord:
    """A session that ran from `started` to `ended`."""
    session = await live_session(factory)
    async with factory.db.transaction() as conn:
        await sessions.transition(conn, session_id=session.id, to="COMPLETED")
        await conn.execute(
            "UPDATE training_sessions SET started_at = $2, ended_at = $3 WHERE id = $1",
            session.id,
            started,
            ended,
        )
    return session


@pytest.mark.parametrize("declared", [True, False], ids=["by-content-type", "by-leading-bytes"])
@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_a_file_stores_what_it_holds(
    client: httpx.AsyncClient, factory: Factory, fmt: str, declared: bool
) -> None:
    session = await live_session(factory)
    write, content_type = FORMATS[fmt]
    # a live session since an hour ago; the file: ten minutes of it
    await factory.db.pool.execute(
        "UPDATE training_sessions SET started_at = now() - interval '1 hour' WHERE id = $1",
        session.id,
    )
    points = ride(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30), 600)
    response = await post_file(
        client,
        session.id,
        write(points),
        token_for("athlete", session.athlete_id),
        content_type if declared else None,
    )
    assert response.status_code == 200, response.text
    want = expected(points)
    answer = response.json()
    assert answer["format"] == fmt.split("-")[0] and answer["accepted"] == len(want)
    assert decode_cursor(answer["lastCursor"]) == len(want)
    stored = await rows(factory)
    assert [r[0] for r in stored] == list(range(1, len(want) + 1))
    assert [r[1:] for r in stored] == want
    assert {k for k, _, _ in want} == {"HEART_RATE", "POWER", "CADENCE", "SPEED"}


async def test_a_completed_session_takes_a_file_within_its_window(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    session = await completed_session(factory, started, started + timedelta(hours=1))
    # an NDJSON-style live write is refused, a file of the ride is not
    points = ride(started + timedelta(minutes=5), 1200)
    response = await post_file(
        client, session.id, fit_file(points), token_for("coach", session.coach_id)
    )
    assert response.status_code == 200, response.text
    assert [r[1:] for r in await rows(factory)] == expected(points)
    # a second file continues the cursors
    more = ride(started + timedelta(minutes=40), 60)
    again = await post_file(client, session.id, gpx_file(more), token_for("admin"))
    assert again.status_code == 200, again.text
    total = len(expected(points)) + len(expected(more))
    assert decode_cursor(again.json()["lastCursor"]) == total
    # a file that runs past the session's end stores nothing, and names its first sample out
    late = ride(started + timedelta(minutes=59, seconds=30), 60)
    refused = await post_file(client, session.id, tcx_file(late), token_for("admin"))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["reason"] == "INVALID_SAMPLE"
    first_out = next(
        i
        for i, (_, at, _) in enumerate(expected(late))
        if at > started + timedelta(hours=1, seconds=5)
    )
    assert error["field"] == f"samples[{first_out}]" and "end + 5 s" in error["message"]
    assert len(await rows(factory)) == total


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]


def _fit() -> bytes:
    return fit_file(ride(datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=90), 60))


def _gpx() -> bytes:
    return gpx_file(ride(datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=90), 60))


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    b'<gpx xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg><trkpt lat="1" lon="1">'
    b"<time>2026-01-01T00:00:00Z</time><extensions><hr>&c;</hr></extensions></trkpt>"
    b"</trkseg></trk></gpx>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<gpx xmlns="http://www.topografix.com/GPX/1/1">&x;</gpx>'
)


@pytest.mark.parametrize(
    ("make", "content_type", "reason", "words"),
    [
        (lambda: _flip(_fit(), 200), None, "CORRUPT_FILE", "CRC"),
        (lambda: _fit()[:-50], None, "CORRUPT_FILE", "Truncated FIT"),
        (lambda: _fit()[:-2] + b"\0\0", None, "CORRUPT_FILE", "CRC"),
        (lambda: _gpx(), "application/vnd.ant.fit", "CORRUPT_FILE", "Not a FIT file"),
        (lambda: _gpx()[:-200], None, "CORRUPT_FILE", "Damaged GPX"),
        (lambda: b"\x89PNG\r\n\x1a\n" + bytes(200), "image/png", "UNSUPPORTED_FILE", "image/png"),
        (lambda: b'{"kind": "HEART_RATE"}', None, "UNSUPPORTED_FILE", "Not a FIT, TCX or GPX"),
        (lambda: b"<html><body>a ride</body></html>", None, "UNSUPPORTED_FILE", "<html>"),
        (lambda: _gpx(), "application/vnd.garmin.tcx+xml", "UNSUPPORTED_FILE", "Not a TCX"),
        (lambda: BILLION_LAUGHS, None, "CORRUPT_FILE", "DTD"),
        (lambda: EXTERNAL_ENTITY, None, "CORRUPT_FILE", "DTD"),
        (lambda: gpx_file([]), None, "EMPTY_FILE", "no heart rate"),
        (lambda: b"", None, "EMPTY_FILE", "empty"),
        (
            lambda: _gpx().replace(b"<gpxtpx:hr>", b"<gpxtpx:hr>x", 1),
            None,
            "CORRUPT_FILE",
            "trkpt 1: <hr> is not a number",
        ),
        (  # a value no sensor gives: the same range check as every sample
            lambda: fit_file(
                [Point(datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=9), 251)]
            ),
            None,
            "INVALID_SAMPLE",
            "HEART_RATE must be between 20 and 250",
        ),
    ],
    ids=[
        "fit-flipped-byte",
        "fit-truncated",
        "fit-bad-crc",
        "gpx-declared-fit",
        "gpx-truncated",
        "png",
        "json",
        "html",
        "gpx-declared-tcx",
        "billion-laughs",
        "external-entity",
        "no-samples",
        "nothing",
        "not-a-number",
        "out-of-range",
    ],
)
async def test_a_corrupt_or_foreign_file_stores_nothing_and_names_the_problem(
    client: httpx.AsyncClient,
    factory: Factory,
    make: Callable[[], bytes],
    content_type: str | None,
    reason: str,
    words: str,
) -> None:
    session = await live_session(factory)
    await factory.db.pool.execute(
        "UPDATE training_sessions SET started_at = now() - interval '10 minutes' WHERE id = $1",
        session.id,
    )
    response = await post_file(
        client, session.id, make(), token_for("athlete", session.athlete_id), content_type
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT" and error["reason"] == reason, error
    assert words in error["message"], error
    assert await rows(factory) == []


async def test_who_may_upload_and_to_which_session(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    session = await live_session(factory)
    body = _fit()
    assert (await post_file(client, session.id, body, None)).status_code == 403
    assert (await post_file(client, session.id, body, "garbage")).status_code == 401
    stranger = await factory.athlete()
    denied = await post_file(client, session.id, body, token_for("athlete", stranger.id))
    assert denied.status_code == 403
    assert (await post_file(client, 99_999, body, token_for("admin"))).status_code == 404
    scheduled = await factory.session(session.coach_id, session.athlete_id)
    assert (await post_file(client, scheduled.id, body, token_for("admin"))).status_code == 409
    assert await rows(factory) == []


async def test_file_limits_come_from_settings(settings: Settings, factory: Factory) -> None:
    limits = dataclasses.replace(
        settings.limits, max_wearable_file_bytes=4_000, max_wearable_file_samples=100
    )
    app = create_app(dataclasses.replace(settings, limits=limits), start_projector=False)
    session = await live_session(factory)
    await factory.db.pool.execute(
        "UPDATE training_sessions SET started_at = now() - interval '10 minutes' WHERE id = $1",
        session.id,
    )
    token = token_for("admin")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        large = await post_file(client, session.id, tcx_file(ride(start, 100)), token)
        assert large.status_code == 413, large.text
        many = await post_file(client, session.id, fit_file(ride(start, 30)), token)
        assert many.status_code == 400 and many.json()["error"]["reason"] == "TOO_MANY"
        fits = await post_file(client, session.id, fit_file(ride(start, 20)), token)
        assert fits.status_code == 200, fits.text
    assert len(await rows(factory)) == fits.json()["accepted"] == len(expected(ride(start, 20)))


async def _seq(factory: Factory, session_id: int) -> int:
    found: int = await factory.db.pool.fetchval(
        "SELECT sample_seq FROM training_sessions WHERE id = $1", session_id
    )
    return found


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_the_same_file_twice_is_stored_once_and_answered_alike(
    client: httpx.AsyncClient, factory: Factory, fmt: str
) -> None:
    """A client that retries an upload (its answer lost to a timeout) gets the first answer
    again, marked `replayed`, and the session's data is not doubled."""
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    session = await completed_session(factory, started, started + timedelta(hours=1))
    write, content_type = FORMATS[fmt]
    body = write(ride(started + timedelta(minutes=10), 300))
    token = token_for("athlete", session.athlete_id)
    first = await post_file(client, session.id, body, token, content_type)
    assert first.status_code == 200, first.text
    stored = await rows(factory)
    # the same bytes again, by another writer, declared or not: nothing stored, the same answer
    for who, declared in ((token, content_type), (token_for("admin"), None)):
        again = await post_file(client, session.id, body, who, declared)
        assert again.status_code == 200, again.text
        assert await rows(factory) == stored
        assert await _seq(factory, session.id) == len(stored)
        assert again.json() == first.json() | {"replayed": True}
    assert first.json()["replayed"] is False and first.json()["skipped"] == 0
    # the same file into another session is that session's first upload
    other = await completed_session(factory, started, started + timedelta(hours=1))
    elsewhere = await post_file(client, other.id, body, token_for("admin"), content_type)
    assert elsewhere.status_code == 200 and elsewhere.json()["replayed"] is False
    assert elsewhere.json()["accepted"] == first.json()["accepted"]


async def test_uploads_of_one_file_at_once_store_it_once(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    session = await completed_session(factory, started, started + timedelta(hours=1))
    body = fit_file(ride(started + timedelta(minutes=1), 1_800))
    token = token_for("coach", session.coach_id)
    answers = await asyncio.gather(*(post_file(client, session.id, body, token) for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len(await rows(factory)) == answers[0].json()["accepted"]
    assert len({(a.json()["accepted"], a.json()["lastCursor"]) for a in answers}) == 1
    assert sorted(a.json()["replayed"] for a in answers) == [False, True, True, True]


async def test_a_file_adds_only_the_seconds_the_session_lacks(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """A second file of the same ride (another export, other bytes), or a file after the ride
    was streamed live: a sample of a kind the session already holds in that second is left out
    and counted in `skipped`; the rest is stored, with cursors following on."""
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    session = await completed_session(factory, started, started + timedelta(hours=1))
    token = token_for("athlete", session.athlete_id)
    # minutes 0-10 as a FIT file, then minutes 5-15 as a GPX export of the same ride
    whole = ride(started, 900)
    first = await post_file(client, session.id, fit_file(whole[:600]), token)
    assert first.status_code == 200, first.text
    second = await post_file(client, session.id, gpx_file(whole[300:]), token)
    assert second.status_code == 200, second.text
    overlap, fresh = expected(whole[300:600]), expected(whole[600:])
    stored = await rows(factory)
    assert [r[1:] for r in stored] == expected(whole[:600]) + fresh
    assert second.json()["skipped"] == len(overlap) and second.json()["accepted"] == len(fresh)
    assert [r[0] for r in stored] == list(range(1, len(stored) + 1))
    assert decode_cursor(second.json()["lastCursor"]) == len(stored)
    # live samples at fractions of a second count for their second; another kind does not
    live = await live_session(factory)
    await factory.db.pool.execute(
        "UPDATE training_sessions SET started_at = $2 WHERE id = $1", live.id, started
    )
    at = started + timedelta(minutes=1)
    await factory.db.pool.execute(
        "INSERT INTO metric_samples (session_id, seq, kind, at, value) VALUES "
        "($1, 1, 'HEART_RATE', $2, 120), ($1, 2, 'HEART_RATE', $3, 121)",
        live.id,
        at + timedelta(milliseconds=250),
        at + timedelta(seconds=1, milliseconds=900),
    )
    await factory.db.pool.execute(
        "UPDATE training_sessions SET sample_seq = 2 WHERE id = $1", live.id
    )
    points = [Point(at, heart_rate=130, power=200), Point(at + timedelta(seconds=1), 131)]
    token = token_for("athlete", live.athlete_id)
    answer = await post_file(client, live.id, tcx_file(points), token)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["accepted"], answer.json()["skipped"]) == (1, 2)
    assert decode_cursor(answer.json()["lastCursor"]) == 3
    # a file holding nothing new stores nothing, and says where the session's cursor is
    again = await post_file(client, live.id, fit_file(points), token)
    assert again.status_code == 200, again.text
    assert again.json() | {"lastCursor": None} == {
        "accepted": 0,
        "skipped": 3,
        "lastCursor": None,
        "format": "FIT",
        "replayed": False,
    }
    assert decode_cursor(again.json()["lastCursor"]) == 3 == await _seq(factory, live.id)


async def test_a_file_adds_nothing_to_minutes_retention_rolled_up(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """An old ride's samples live on as 1-minute rollups once retention has run: another file
    of that ride adds only the minutes no rollup holds, so each sample is counted once."""
    now = datetime.now(UTC).replace(microsecond=0)
    started = now - timedelta(days=40)
    session = await completed_session(factory, started, started + timedelta(hours=1))
    token = token_for("athlete", session.athlete_id)
    ridden = ride(started + timedelta(minutes=5), 180)  # minutes 5, 6 and 7 of the session
    first = await post_file(client, session.id, fit_file(ridden[:120]), token)
    assert first.status_code == 200, first.text
    policy = retention.Policy(raw_days=30, rollup_days=365, ahead_days=7)
    await retention.run(factory.db, now=now, policy=policy)
    assert await rows(factory) == []  # rolled up, the raw samples gone
    again = await post_file(client, session.id, gpx_file(ridden), token)
    assert again.status_code == 200, again.text
    assert [r[1:] for r in await rows(factory)] == expected(ridden[120:])
    assert again.json()["skipped"] == len(expected(ridden[:120]))
    await retention.run(factory.db, now=now, policy=policy)
    counted = await factory.db.pool.fetchval(
        "SELECT sum(count) FROM metric_rollups WHERE session_id = $1", session.id
    )
    assert counted == len(expected(ridden))
