"""exportAthleteData: a signed, expiring URL of one JSON document with what is stored about
the athlete (records, samples, rollups, media as signed URLs) and nothing of anyone else,
written piece by piece."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from coachgraph.ids import to_global_id
from coachgraph.lifecycle import export
from coachgraph.media.model import new_key
from coachgraph.runtime import Resources
from coachgraph.stores import media as media_rows
from coachgraph.stores import metrics, programs, sessions
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

EXPORT = """mutation($id: ID!) { exportAthleteData(id: $id) {
  __typename ... on DataExport { url expiresAt } ... on UserError { message } } }"""


async def athlete_with_data(factory: Factory, name: str, value: float) -> tuple[int, int]:
    coach = await factory.coach(name=f"Coach of {name}")
    athlete = await factory.athlete(name=name)
    skill = await factory.skill(name=f"Skill of {name}")
    await factory.assign(coach.id, athlete.id)
    await factory.learn(athlete.id, skill.id)
    program = await factory.program(coach.id, [skill.id], title=f"Program of {name}")
    async with factory.db.transaction() as conn:
        await programs.enroll(conn, athlete_id=athlete.id, program_id=program.id)
    scheduled = await factory.session(coach.id, athlete.id)
    now = datetime.now(UTC)
    async with factory.db.transaction() as conn:
        await sessions.transition(conn, session_id=scheduled.id, to="LIVE")
    async with factory.db.transaction() as conn:
        await metrics.append(
            conn,
            session_id=scheduled.id,
            samples=[("HEART_RATE", now + timedelta(seconds=i), value) for i in range(25)],
        )
    async with factory.db.transaction() as conn:
        await sessions.transition(conn, session_id=scheduled.id, to="COMPLETED")
        key = new_key(
            kind="IMAGE", owner_type="Athlete", owner_id=athlete.id, content_type="image/png"
        )
        await media_rows.create(
            conn,
            owner_type="Athlete",
            owner_id=athlete.id,
            kind="IMAGE",
            content_type="image/png",
            size_bytes=4,
            storage_key=key,
            created_by=None,
        )
        await conn.execute("UPDATE media SET status = 'READY' WHERE storage_key = $1", key)
    return athlete.id, scheduled.id


async def download(client: httpx.AsyncClient, url: str) -> httpx.Response:
    parts = urlsplit(url)
    return await client.get(f"{parts.path}?{parts.query}")


async def test_the_export_holds_what_was_stored_and_nothing_of_others(
    gql: GraphQLClient, client: httpx.AsyncClient, factory: Factory
) -> None:
    mine, session_id = await athlete_with_data(factory, "Ada Mine", 131.0)
    other, other_session = await athlete_with_data(factory, "Bob Other", 777.0)
    token = token_for("athlete", mine)
    async with factory.db.transaction() as conn:  # an answered questionnaire (issue 16)
        coach_id = await conn.fetchval(
            "SELECT coach_id FROM training_sessions WHERE id = $1", session_id
        )
        questionnaire = await conn.fetchval(
            "INSERT INTO questionnaires (coach_id) VALUES ($1) RETURNING id", coach_id
        )
        await conn.execute(
            "INSERT INTO questionnaire_versions (questionnaire_id, version, title, questions) "
            "VALUES ($1, 1, 'After the ride', $2::jsonb)",
            questionnaire,
            [{"key": "rpe", "label": "Effort", "kind": "SCALE", "min": 1, "max": 10}],
        )
        await conn.execute(
            "INSERT INTO session_feedback (session_id, questionnaire_id, version, athlete_id, "
            "answers) VALUES ($1, $2, 1, $3, $4::jsonb)",
            session_id,
            questionnaire,
            mine,
            {"rpe": 7},
        )

    answer = (await gql(EXPORT, {"id": to_global_id("Athlete", mine)}, token))["data"]
    made = answer["exportAthleteData"]
    assert made["__typename"] == "DataExport"
    assert datetime.fromisoformat(made["expiresAt"]) > datetime.now(UTC)

    response = await download(client, made["url"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = json.loads(response.content)
    assert doc["athlete"]["name"] == "Ada Mine" and doc["athlete"]["id"] == mine
    assert [s["name"] for s in doc["skills"]] == ["Skill of Ada Mine"]
    assert [c["coach"] for c in doc["coaches"]] == ["Coach of Ada Mine"]
    assert [e["program"] for e in doc["enrollments"]] == ["Program of Ada Mine"]
    assert [s["id"] for s in doc["sessions"]] == [session_id]
    assert len(doc["samples"]) == 25 and {s["value"] for s in doc["samples"]} == {131.0}
    assert {s["session_id"] for s in doc["samples"]} == {session_id}
    assert sum(r["count"] for r in doc["rollups"]) == 25
    assert len(doc["media"]) == 1 and doc["media"][0]["url"].startswith("http")
    [feedback] = doc["feedback"]
    assert feedback["session"] == session_id and feedback["answers"] == {"rpe": 7}
    assert (
        feedback["questionnaire"] == "After the ride" and feedback["questions"][0]["key"] == "rpe"
    )
    text = response.text
    # 777.0: the other athlete's sample value (a bare "777" may stand in a timestamp)
    for foreign in ("Bob Other", "777.0", "Coach of Bob", "Program of Bob"):
        assert foreign not in text
    assert other_session not in {s["id"] for s in doc["sessions"]}

    # the admin may; another athlete and a coach may not; a missing athlete is not found
    admin = await gql(EXPORT, {"id": to_global_id("Athlete", other)}, token_for("admin"))
    assert admin["data"]["exportAthleteData"]["__typename"] == "DataExport"
    for who in (token_for("athlete", other), token_for("coach", 1)):
        denied = await gql(EXPORT, {"id": to_global_id("Athlete", mine)}, who)
        assert denied["data"]["exportAthleteData"]["__typename"] == "PermissionDeniedError"
    missing = await gql(EXPORT, {"id": to_global_id("Athlete", 9999)}, token_for("admin"))
    assert missing["data"]["exportAthleteData"]["__typename"] == "NotFoundError"


async def test_a_forged_or_expired_link_is_refused(
    client: httpx.AsyncClient, factory: Factory, app_resources: tuple[Any, Resources]
) -> None:
    mine, _ = await athlete_with_data(factory, "Ada Mine", 131.0)
    secret = app_resources[1].jwt_secret
    url, _ = export.signed_url(
        secret, base_url="http://testserver", athlete_id=mine, ttl_seconds=60
    )
    assert (await download(client, url)).status_code == 200
    other_id = url.replace(f"/athletes/{mine}?", f"/athletes/{mine + 1}?")
    expired, _ = export.signed_url(
        secret, base_url="http://testserver", athlete_id=mine, ttl_seconds=-5
    )
    for bad in (other_id, expired, url.replace("sig=", "sig=0"), url.split("?")[0]):
        refused = await download(client, bad)
        assert refused.status_code == 403, bad
        assert refused.json()["error"]["code"] == "FORBIDDEN"


async def test_the_document_is_written_piece_by_piece(
    factory: Factory, app_resources: tuple[Any, Resources]
) -> None:
    mine, _ = await athlete_with_data(factory, "Ada Mine", 131.0)
    resources = app_resources[1]
    pieces = [
        piece
        async for piece in export.document(
            resources.db,
            resources.media,
            athlete_id=mine,
            base_url="http://testserver",
            media_ttl_seconds=60,
            chunk_rows=4,
        )
    ]
    samples = [p for p in pieces if p.count(b'"seq"')]
    assert len(samples) == 7 and max(p.count(b'"seq"') for p in samples) == 4  # 25 in 4s
    doc = json.loads(b"".join(pieces))
    assert len(doc["samples"]) == 25
