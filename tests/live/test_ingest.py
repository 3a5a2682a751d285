"""Ingestion through recordMetrics and NDJSON: validation, all or nothing, policy, queries."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from coachgraph.ids import decode_cursor, to_global_id
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory
from tests.live.conftest import live_session, samples

RECORD = """mutation($id: ID!, $samples: [MetricSampleInput!]!) { recordMetrics(sessionId: $id, samples: $samples) {
  __typename ... on RecordMetrics { accepted lastCursor } ... on UserError { message }
  ... on ValidationError { field code } } }"""


async def stored(factory: Factory) -> int:
    return await factory.count("metric_samples")


async def test_record_metrics_assigns_monotonic_cursors(
    gql: GraphQLClient, factory: Factory
) -> None:
    session = await live_session(factory)
    sid = to_global_id("TrainingSession", session.id)
    token = token_for("athlete", session.athlete_id)
    first = (await gql(RECORD, {"id": sid, "samples": samples(300)}, token))["data"][
        "recordMetrics"
    ]
    second = (
        await gql(
            RECORD, {"id": sid, "samples": samples(200)}, token_for("coach", session.coach_id)
        )
    )["data"]["recordMetrics"]
    assert first == {
        "__typename": "RecordMetrics",
        "accepted": 300,
        "lastCursor": first["lastCursor"],
    }
    assert decode_cursor(first["lastCursor"]) == 300 and decode_cursor(second["lastCursor"]) == 500
    seqs = [
        r["seq"] for r in await factory.db.pool.fetch("SELECT seq FROM metric_samples ORDER BY seq")
    ]
    assert seqs == list(range(1, 501))


@pytest.mark.parametrize(
    ("index", "bad", "code"),
    [
        (7, {"kind": "HEART_RATE", "value": 251}, "INVALID_SAMPLE"),
        (3, {"kind": "POWER", "value": -1}, "INVALID_SAMPLE"),
        (0, {"kind": "SPEED", "value": 40.5}, "INVALID_SAMPLE"),
        (9, {"kind": "HRV", "value": 0.5}, "INVALID_SAMPLE"),
        (4, {"at": "2020-01-01T00:00:00+00:00"}, "INVALID_SAMPLE"),
        (5, {"at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}, "INVALID_SAMPLE"),
    ],
)
async def test_bad_batches_store_nothing_and_name_the_first_offender(
    gql: GraphQLClient, factory: Factory, index: int, bad: dict[str, Any], code: str
) -> None:
    session = await live_session(factory)
    batch = samples(10)
    batch[index] = batch[index] | bad
    batch[9] = batch[9] | {"value": 999}  # a later offender is not the one reported
    body = await gql(
        RECORD,
        {"id": to_global_id("TrainingSession", session.id), "samples": batch},
        token_for("admin"),
    )
    result = body["data"]["recordMetrics"]
    assert result["__typename"] == "ValidationError" and result["code"] == code, result
    assert result["field"] == f"samples[{index}]"
    assert await stored(factory) == 0


async def test_batch_limits(gql: GraphQLClient, factory: Factory) -> None:
    session = await live_session(factory)
    sid = to_global_id("TrainingSession", session.id)
    for n in (0, 1001):
        body = await gql(RECORD, {"id": sid, "samples": samples(n)}, token_for("admin"))
        assert body["data"]["recordMetrics"]["code"] == "OUT_OF_RANGE"
    assert await stored(factory) == 0


async def test_only_live_sessions_and_only_their_people(
    gql: GraphQLClient, factory: Factory
) -> None:
    session = await live_session(factory)
    sid = to_global_id("TrainingSession", session.id)
    stranger, other_coach = await factory.athlete(), await factory.coach()
    for token in (token_for("athlete", stranger.id), token_for("coach", other_coach.id)):
        body = await gql(RECORD, {"id": sid, "samples": samples(5)}, token)
        assert body["data"]["recordMetrics"]["__typename"] == "PermissionDeniedError"
    anonymous = await gql(RECORD, {"id": sid, "samples": samples(5)})
    assert anonymous["data"]["recordMetrics"]["__typename"] == "PermissionDeniedError"
    scheduled = await factory.session(session.coach_id, session.athlete_id)
    body = await gql(
        RECORD,
        {"id": to_global_id("TrainingSession", scheduled.id), "samples": samples(5)},
        token_for("admin"),
    )
    assert body["data"]["recordMetrics"]["__typename"] == "ConflictError"
    missing = await gql(
        RECORD,
        {"id": to_global_id("TrainingSession", 9999), "samples": samples(5)},
        token_for("admin"),
    )
    assert missing["data"]["recordMetrics"]["__typename"] == "NotFoundError"
    assert await stored(factory) == 0


def ndjson(rows: list[dict[str, Any]]) -> bytes:
    return b"\n".join(json.dumps(r).encode() for r in rows) + b"\n"


async def post_ndjson(
    client: httpx.AsyncClient, session_id: int, body: bytes, token: str | None
) -> httpx.Response:
    headers = {"Content-Type": "application/x-ndjson"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return await client.post(
        f"/ingest/sessions/{to_global_id('TrainingSession', session_id)}/samples",
        content=body,
        headers=headers,
    )


async def test_ndjson_ingest(client: httpx.AsyncClient, factory: Factory) -> None:
    session = await live_session(factory)
    response = await post_ndjson(
        client, session.id, ndjson(samples(5_000)), token_for("athlete", session.athlete_id)
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 5_000
    assert decode_cursor(response.json()["lastCursor"]) == 5_000
    assert await stored(factory) == 5_000


@pytest.mark.parametrize(
    ("body", "status", "line"),
    [
        (
            b'{"kind": "HEART_RATE", "at": "%s", "value": 80}\n{"kind": "HEART_RATE", "at": \n',
            400,
            2,
        ),
        (
            b'{"kind": "HEART_RATE", "at": "%s", "value": 80}\n{"kind": "HEART_RATE", "at": "%s", "value": 300}\n',
            400,
            2,
        ),
        (
            b'{"kind": "HEART_RATE", "at": "%s", "value": 80}\n{"kind": "SWIM", "at": "%s", "value": 3}\n',
            400,
            2,
        ),
        (b'{"kind": "HEART_RATE", "at": "not a time", "value": 80}\n', 400, 1),
        (b"[1, 2, 3]\n", 400, 1),
        # two objects on one line would shift every index of a bulk parse
        (
            b'{"kind": "POWER", "at": "%s", "value": 80}\n{"kind": "POWER", "at": "%s", "value": 80}, {"kind": "POWER", "at": "%s", "value": 80}\n',
            400,
            2,
        ),
        (
            b'{"kind": "POWER", "at": "%s", "value": 80}\n{"kind": "POWER", "at": "%s", "value": true}\n',
            400,
            2,
        ),
        (
            b'{"kind": "POWER", "at": "%s", "value": 80}\n{"kind": 7, "at": "%s", "value": 80}\n',
            400,
            2,
        ),
    ],
)
async def test_bad_ndjson_stores_nothing(
    client: httpx.AsyncClient, factory: Factory, body: bytes, status: int, line: int
) -> None:
    session = await live_session(factory)
    now = datetime.now(UTC).isoformat().encode()
    body = body.replace(b"%s", now)
    response = await post_ndjson(client, session.id, body, token_for("admin"))
    assert response.status_code == status, response.text
    assert response.json()["error"]["line"] == line
    assert await stored(factory) == 0


async def test_ndjson_authorization(client: httpx.AsyncClient, factory: Factory) -> None:
    session = await live_session(factory)
    body = ndjson(samples(3))
    assert (await post_ndjson(client, session.id, body, None)).status_code == 403
    assert (await post_ndjson(client, session.id, body, "garbage")).status_code == 401
    stranger = await factory.athlete()
    assert (
        await post_ndjson(client, session.id, body, token_for("athlete", stranger.id))
    ).status_code == 403
    assert (
        await post_ndjson(client, 99_999, body, token_for("coach", session.coach_id))
    ).status_code == 403
    assert (await post_ndjson(client, 99_999, body, token_for("admin"))).status_code == 404
    async with factory.db.transaction() as conn:
        from coachgraph.stores import sessions

        await sessions.transition(conn, session_id=session.id, to="COMPLETED")
    assert (await post_ndjson(client, session.id, body, token_for("admin"))).status_code == 409
    assert await stored(factory) == 0


async def test_samples_series_and_summary(gql: GraphQLClient, factory: Factory) -> None:
    session = await live_session(factory)
    sid = to_global_id("TrainingSession", session.id)
    start = datetime.now(UTC) - timedelta(seconds=3)
    batch = [
        {
            "kind": "HEART_RATE",
            "at": (start + timedelta(milliseconds=100 * i)).isoformat(),
            "value": 100 + i,
        }
        for i in range(20)
    ] + [{"kind": "POWER", "at": start.isoformat(), "value": 250}]
    await gql(RECORD, {"id": sid, "samples": batch}, token_for("admin"))
    token = token_for("athlete", session.athlete_id)
    query = """query($id: ID!, $after: String) { node(id: $id) { ... on TrainingSession {
      samples(kinds: [HEART_RATE], first: 8, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { cursor value kind } } }
      series(kind: HEART_RATE, bucketSeconds: 1) { count min max avg }
      summary { sampleCount avgHeartRate maxHeartRate durationSeconds } } } }"""
    seen, after = [], None
    while True:
        node = (await gql(query, {"id": sid, "after": after}, token))["data"]["node"]
        page = node["samples"]
        assert page["totalCount"] == 20
        seen += [e["node"]["value"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [100 + i for i in range(20)]
    expected = await factory.db.pool.fetch(
        "SELECT count(*)::int AS count, min(value), max(value) FROM metric_samples m "
        "JOIN training_sessions s ON s.id = m.session_id WHERE kind = 'HEART_RATE' "
        "GROUP BY date_bin('1 second', m.at, s.started_at) ORDER BY 1"
    )
    assert sum(b["count"] for b in node["series"]) == 20
    assert sorted(b["count"] for b in node["series"]) == sorted(r["count"] for r in expected)
    summary = node["summary"]
    assert summary["sampleCount"] == 21 and summary["maxHeartRate"] == 119
    assert summary["avgHeartRate"] == pytest.approx(109.5)
    stranger = await factory.athlete()
    denied = await gql(query, {"id": sid}, token_for("athlete", stranger.id))
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_ndjson_across_copy_chunks_is_all_or_nothing(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    session = await live_session(factory)
    rows = samples(25_000)  # three COPY chunks of 10,000 lines
    rows[23_000] = rows[23_000] | {"value": 7}  # a heart rate of 7: refused after two COPYs ran
    response = await post_ndjson(client, session.id, ndjson(rows), token_for("admin"))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["line"] == 23_001
    assert await stored(factory) == 0
    seq = await factory.db.pool.fetchval(
        "SELECT sample_seq FROM training_sessions WHERE id = $1", session.id
    )
    assert seq == 0  # the reserved cursors rolled back too

    rows[23_000] = rows[23_000] | {"value": 70}
    response = await post_ndjson(client, session.id, ndjson(rows), token_for("admin"))
    assert response.status_code == 200, response.text
    got = [
        r["seq"] for r in await factory.db.pool.fetch("SELECT seq FROM metric_samples ORDER BY seq")
    ]
    assert got == list(range(1, 25_001))


async def test_empty_ndjson_is_refused(client: httpx.AsyncClient, factory: Factory) -> None:
    session = await live_session(factory)
    response = await post_ndjson(client, session.id, b"\n\n", token_for("admin"))
    assert response.status_code == 400
    assert await stored(factory) == 0


async def test_the_same_ndjson_body_twice_is_stored_once(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """A retried body (its answer lost to a timeout) is answered as the first was, marked
    `replayed`, and stores nothing; bodies that differ are stored, each once; sent at once,
    the same body is stored once."""
    session = await live_session(factory)
    token = token_for("athlete", session.athlete_id)
    body = ndjson(samples(12_000))  # two COPY chunks
    first = await post_ndjson(client, session.id, body, token)
    assert first.status_code == 200, first.text
    again = await post_ndjson(client, session.id, body, token_for("coach", session.coach_id))
    assert again.status_code == 200, again.text
    assert await stored(factory) == 12_000
    assert again.json() == first.json() | {"replayed": True}
    assert first.json()["replayed"] is False
    other = ndjson(samples(3))
    answers = await asyncio.gather(
        *(post_ndjson(client, session.id, other, token) for _ in range(3))
    )
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    assert await stored(factory) == 12_003
    assert {decode_cursor(a.json()["lastCursor"]) for a in answers} == {12_003}
    assert sorted(a.json()["replayed"] for a in answers) == [False, True, True]
    seq = await factory.db.pool.fetchval(
        "SELECT sample_seq FROM training_sessions WHERE id = $1", session.id
    )
    assert seq == 12_003  # a replay rolled back the cursors it took
