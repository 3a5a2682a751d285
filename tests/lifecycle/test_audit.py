"""Audit: a coach (or admin) reading an athlete's session data leaves one row per request,
written in one statement; the athlete reading itself leaves none; erasure and export are
recorded; the rows outlive the athlete, under an opaque subject; auditEvents' policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from coachgraph.ids import to_global_id
from coachgraph.stores import metrics, sessions
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

SERIES = """query($a: ID!, $b: ID!) {
  a: node(id: $a) { ... on TrainingSession { s1: series(kind: HEART_RATE, bucketSeconds: 1) { count }
                                             s2: series(kind: HEART_RATE, bucketSeconds: 2) { count } } }
  b: node(id: $b) { ... on TrainingSession { series(kind: HEART_RATE, bucketSeconds: 1) { count } } } }"""
EVENTS = """query($subject: ID, $first: Int) { auditEvents(subjectId: $subject, first: $first) {
  totalCount edges { node { actor action subject at } } } }"""


async def coached(factory: Factory) -> tuple[int, int, list[int]]:
    coach = await factory.coach()
    athlete = await factory.athlete()
    await factory.assign(coach.id, athlete.id)
    ids = []
    for _ in range(2):
        scheduled = await factory.session(coach.id, athlete.id)
        async with factory.db.transaction() as conn:
            await sessions.transition(conn, session_id=scheduled.id, to="LIVE")
        now = datetime.now(UTC)
        async with factory.db.transaction() as conn:
            await metrics.append(
                conn,
                session_id=scheduled.id,
                samples=[("HEART_RATE", now + timedelta(seconds=i), 120.0) for i in range(5)],
            )
        ids.append(scheduled.id)
    return coach.id, athlete.id, ids


def series_vars(ids: list[int]) -> dict[str, str]:
    return {
        "a": to_global_id("TrainingSession", ids[0]),
        "b": to_global_id("TrainingSession", ids[1]),
    }


async def rows(factory: Factory) -> list[dict[str, object]]:
    found = await factory.db.pool.fetch(
        "SELECT actor, action, subject FROM audit_events ORDER BY id"
    )
    return [dict(r) for r in found]


async def test_a_coach_reading_series_leaves_one_row_per_request_the_athlete_none(
    gql: GraphQLClient, factory: Factory
) -> None:
    coach_id, athlete_id, ids = await coached(factory)
    mine = token_for("athlete", athlete_id)
    body, alone = await gql.statements(SERIES, series_vars(ids), mine)
    assert "errors" not in body and await rows(factory) == []

    body, audited = await gql.statements(SERIES, series_vars(ids), token_for("coach", coach_id))
    assert "errors" not in body
    found = await rows(factory)
    assert len(found) == 1  # three series fields over two sessions: one row
    assert found[0]["actor"] == f"COACH {to_global_id('Coach', coach_id)}"
    assert found[0]["action"] == "read:series"
    subject = found[0]["subject"]
    assert isinstance(subject, str) and subject.startswith("s_")
    assert subject != to_global_id("Athlete", athlete_id)  # opaque: not the athlete's ID
    assert audited - alone <= 3  # one INSERT (in its transaction), not one per field

    await gql(SERIES, series_vars(ids), token_for("admin"))
    found = await rows(factory)
    assert len(found) == 2 and found[1]["actor"] == "ADMIN"
    assert {r["subject"] for r in found} == {subject}


async def test_audit_events_policy_and_rows_outlive_erasure(
    gql: GraphQLClient, factory: Factory
) -> None:
    coach_id, athlete_id, ids = await coached(factory)
    other = await factory.athlete()
    await gql(SERIES, series_vars(ids), token_for("coach", coach_id))
    athlete = to_global_id("Athlete", athlete_id)
    mine = token_for("athlete", athlete_id)

    own = (await gql(EVENTS, {}, mine))["data"]["auditEvents"]
    assert own["totalCount"] == 1 and own["edges"][0]["node"]["action"] == "read:series"
    assert (await gql(EVENTS, {}, token_for("athlete", other.id)))["data"]["auditEvents"][
        "totalCount"
    ] == 0
    for refused, token in (
        ({"subject": athlete}, token_for("athlete", other.id)),
        ({}, token_for("coach", coach_id)),
        ({}, None),
    ):
        answer = await gql(EVENTS, refused, token)
        assert answer["errors"][0]["extensions"]["code"] in {"FORBIDDEN", "UNAUTHENTICATED"}
    admin = token_for("admin")
    assert (await gql(EVENTS, {"subject": athlete}, admin))["data"]["auditEvents"][
        "totalCount"
    ] == 1

    erase = "mutation($id: ID!) { eraseAthlete(id: $id) { __typename } }"
    assert (await gql(erase, {"id": athlete}, mine))["data"]["eraseAthlete"][
        "__typename"
    ] == "Erasure"
    after = (await gql(EVENTS, {}, admin))["data"]["auditEvents"]
    actions = [e["node"]["action"] for e in after["edges"]]
    assert actions == ["read:series", "erase"]
    subject = after["edges"][0]["node"]["subject"]
    assert {e["node"]["subject"] for e in after["edges"]} == {subject}
    by_subject = await gql(EVENTS, {"subject": subject}, admin)
    assert by_subject["data"]["auditEvents"]["totalCount"] == 2
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await factory.db.pool.execute("DELETE FROM audit_events")


async def test_an_export_is_audited_even_by_the_athlete_itself(
    gql: GraphQLClient, factory: Factory
) -> None:
    athlete = await factory.athlete()
    mutation = "mutation($id: ID!) { exportAthleteData(id: $id) { __typename } }"
    token = token_for("athlete", athlete.id)
    await gql(mutation, {"id": to_global_id("Athlete", athlete.id)}, token)
    found = await rows(factory)
    assert [r["action"] for r in found] == ["export"]
    assert found[0]["actor"] == f"ATHLETE {to_global_id('Athlete', athlete.id)}"


async def test_a_coach_reading_its_athlete_in_full_is_audited(
    gql: GraphQLClient, factory: Factory
) -> None:
    coach_id, athlete_id, _ = await coached(factory)
    query = """query($id: ID!) { node(id: $id) { ... on Athlete {
      name enrollments { status } coaches { name } sessions(first: 5) { totalCount } } } }"""
    variables = {"id": to_global_id("Athlete", athlete_id)}
    await gql(query, variables, token_for("athlete", athlete_id))
    assert await rows(factory) == []
    answer = await gql(query, variables, token_for("coach", coach_id))
    assert answer["data"]["node"]["sessions"]["totalCount"] == 2
    assert [r["action"] for r in await rows(factory)] == ["read:profile"]


async def test_an_eager_batch_writes_each_event_once_as_it_is_recorded(factory: Factory) -> None:
    """WebSocket operations have no request end: their events are written as recorded."""
    from coachgraph.lifecycle.audit import AuditBatch

    batch = AuditBatch("key", eager_db=factory.db)
    for _ in range(3):
        batch.record(actor="COACH x", action="read:samples", athlete_id=7)
    await batch.settle()
    batch.record(actor="COACH x", action="read:samples", athlete_id=7)
    batch.record(actor="COACH x", action="read:series", athlete_id=7)
    await batch.settle()
    assert [r["action"] for r in await rows(factory)] == ["read:samples", "read:series"]


async def test_events_recorded_with_the_database_are_written_before_the_flush(
    factory: Factory,
) -> None:
    """The INSERT starts while the request goes on; the flush waits for it and adds none."""
    import asyncio

    from coachgraph.lifecycle.audit import AuditBatch

    batch = AuditBatch("key")
    for athlete_id in (7, 8, 7):
        batch.record(actor="COACH x", action="read:series", athlete_id=athlete_id, db=factory.db)
    for _ in range(200):  # written without anyone waiting for it
        if len(await rows(factory)) == 2:
            break
        await asyncio.sleep(0.01)
    assert [r["action"] for r in await rows(factory)] == ["read:series"] * 2
    before = await factory.db.settle()
    await batch.flush(factory.db)
    assert await factory.db.settle() == before  # nothing left to write
    assert len(await rows(factory)) == 2


async def test_concurrent_requests_share_one_insert(factory: Factory) -> None:
    import asyncio

    from coachgraph.lifecycle.audit import AuditBatch

    batches = [AuditBatch("key") for _ in range(5)]
    before = await factory.db.settle()
    for i, batch in enumerate(batches):  # five requests' fields resolving in the same turn
        batch.record(actor=f"COACH {i}", action="read:summary", athlete_id=i, db=factory.db)
        batch.record(actor=f"COACH {i}", action="read:series", athlete_id=i, db=factory.db)
    await asyncio.gather(*(batch.flush(factory.db) for batch in batches))
    assert await factory.db.settle() - before == 1  # one INSERT for the ten events
    found = await rows(factory)
    assert len(found) == 10
    assert {r["actor"] for r in found} == {f"COACH {i}" for i in range(5)}


async def test_a_failed_audit_write_fails_the_flush(factory: Factory) -> None:
    """No answer without its audit rows: the request's flush raises the INSERT's error."""
    from coachgraph.lifecycle.audit import AuditBatch

    batch = AuditBatch("key")
    batch.record(actor="COACH x", action="read:series", athlete_id=7, db=factory.db)
    batch.events[("COACH x", None, "s_x")] = None  # type: ignore[index]  # action NOT NULL
    with pytest.raises(asyncpg.NotNullViolationError):
        await batch.flush(factory.db)


async def test_the_writers_asynchronous_commit_leaves_the_connection_as_it_was(
    factory: Factory,
) -> None:
    """Its commit alone skips the WAL flush: the pooled connection's setting is untouched."""
    from coachgraph.stores import audit

    async with factory.db.pool.acquire() as conn:
        before = await conn.fetchval("SHOW synchronous_commit")
        await audit.append(conn, events=[("ADMIN", "read:series", "s_x")], durable=False)
        assert await conn.fetchval("SHOW synchronous_commit") == before != "off"
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 1
