"""Athlete.compliance: scheduled vs completed sessions in a window and the one before,
checked against a count done here; its policy; one statement for a listed roster."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from coachgraph.ids import to_global_id
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

COMPLIANCE = """query($id: ID!, $days: Int) { node(id: $id) { ... on Athlete {
  compliance(days: $days) { days scheduled completed rate previousRate dropped } } } }"""

ROSTER = """{ viewer { coach { athletes(first: 100) { edges { node { name
  compliance(days: 14) { scheduled completed rate dropped } } } } } } }"""

ROSTER_WITHOUT = """{ viewer { coach { athletes(first: 100) { edges { node { name } } } } } }"""

STATUSES = ("SCHEDULED", "LIVE", "COMPLETED", "CANCELLED")


def expected(made: list[tuple[float, str]], days: int) -> dict[str, object]:
    """The answer, counted here from (days ago, status) pairs."""
    counted = [(ago, status) for ago, status in made if status != "CANCELLED" and ago > 0]
    now = [s for ago, s in counted if ago <= days]
    before = [s for ago, s in counted if days < ago <= 2 * days]
    rate = now.count("COMPLETED") / len(now) if now else None
    previous = before.count("COMPLETED") / len(before) if before else None
    return {
        "days": days,
        "scheduled": len(now),
        "completed": now.count("COMPLETED"),
        "rate": rate,
        "previousRate": previous,
        "dropped": rate is not None and previous is not None and previous - rate >= 0.2 - 1e-9,
    }


async def test_compliance_matches_a_count_done_here(gql: GraphQLClient, factory: Factory) -> None:
    rng = random.Random(16)
    coach = await factory.coach()
    now = datetime.now(UTC)
    for n in range(4):
        athlete = await factory.athlete()
        await factory.assign(coach.id, athlete.id)
        made: list[tuple[float, str]] = []
        for _ in range(rng.randint(0, 25)):
            # whole days and a half: no session sits on a window's edge as the test runs
            ago = rng.randint(-5, 70) + 0.5
            status = rng.choice(STATUSES)
            await factory.session_at(
                coach.id, athlete.id, scheduled_at=now - timedelta(days=ago), status=status
            )
            made.append((ago, status))
        for days in (7, 30):
            body = await gql(
                COMPLIANCE,
                {"id": to_global_id("Athlete", athlete.id), "days": days},
                token_for("coach", coach.id),
            )
            assert "errors" not in body, body
            got = body["data"]["node"]["compliance"]
            assert got == expected(made, days), (n, days)


async def test_a_fall_of_exactly_twenty_points_is_a_drop(
    gql: GraphQLClient, factory: Factory
) -> None:
    """4/5 after 5/5: 0.2 exactly (1.0 - 0.8 is 0.19999999999999996 in floating point)."""
    coach = await factory.coach()
    athlete, steady = await factory.athlete(), await factory.athlete()
    now = datetime.now(UTC)
    for who, current in ((athlete, 4), (steady, 5)):
        await factory.assign(coach.id, who.id)
        for i in range(5):
            before = now - timedelta(days=40 + i)
            await factory.session_at(coach.id, who.id, scheduled_at=before, status="COMPLETED")
            status = "COMPLETED" if i < current else "SCHEDULED"
            when = now - timedelta(days=3 + i)
            await factory.session_at(coach.id, who.id, scheduled_at=when, status=status)
    token = token_for("admin")
    for who, dropped, rate in ((athlete, True, 0.8), (steady, False, 1.0)):
        body = await gql(COMPLIANCE, {"id": to_global_id("Athlete", who.id)}, token)
        got = body["data"]["node"]["compliance"]
        assert got["days"] == 30 and got["rate"] == rate and got["previousRate"] == 1.0
        assert got["dropped"] is dropped


async def test_compliance_policy_and_bad_days(gql: GraphQLClient, factory: Factory) -> None:
    coach, other = await factory.coach(), await factory.coach()
    athlete = await factory.athlete(looking_for_coach=True)
    await factory.assign(coach.id, athlete.id)
    variables = {"id": to_global_id("Athlete", athlete.id), "days": 30}
    for token in (
        token_for("admin"),
        token_for("coach", coach.id),
        token_for("athlete", athlete.id),
    ):
        body = await gql(COMPLIANCE, variables, token)
        assert body["data"]["node"]["compliance"]["scheduled"] == 0, body
    # another coach sees the profile of an athlete looking for a coach, not its compliance
    body = await gql(COMPLIANCE, variables, token_for("coach", other.id))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert body["data"]["node"] is None  # compliance is non-null: the error nulls the athlete
    for days in (0, -1, 367):
        body = await gql(COMPLIANCE, {**variables, "days": days}, token_for("admin"))
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", days


async def test_roster_compliance_is_one_statement_for_5_or_50_athletes(
    gql: GraphQLClient, factory: Factory
) -> None:
    counts = []
    for size in (5, 50):
        await factory.db.pool.execute(
            "TRUNCATE coaches, athletes, training_sessions RESTART IDENTITY CASCADE"
        )
        coach = await factory.coach(capacity=100)
        now = datetime.now(UTC)
        for i in range(size):
            athlete = await factory.athlete()
            await factory.assign(coach.id, athlete.id)
            for ago, status in ((2, "COMPLETED"), (5, "SCHEDULED"), (20, "COMPLETED")):
                when = now - timedelta(days=ago, hours=i % 3)
                await factory.session_at(coach.id, athlete.id, scheduled_at=when, status=status)
        token = token_for("coach", coach.id)
        await gql(ROSTER, token=token)  # warm-up: asyncpg introspects types once per connection
        body, with_compliance = await gql.statements(ROSTER, token=token)
        assert "errors" not in body, body
        edges = body["data"]["viewer"]["coach"]["athletes"]["edges"]
        assert len(edges) == size
        assert all(
            e["node"]["compliance"]
            == {"scheduled": 2, "completed": 1, "rate": 0.5, "dropped": True}
            for e in edges
        )
        _, without = await gql.statements(ROSTER_WITHOUT, token=token)
        counts.append((with_compliance, without))
    assert counts[0] == counts[1], counts
    # the whole roster's compliance: one statement, and the coach's roster once, for the
    # access check (who may read an athlete in full)
    assert counts[0][0] == counts[0][1] + 2, counts
