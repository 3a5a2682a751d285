"""The leaderboard contract, over Postgres and Redis: the same rankings, computed here from
the sessions made, for every metric and period; ties by athlete id; only enrolled athletes,
completed sessions of the program, in the period. Then through GraphQL: policy, and the
Redis app's boards following endSession, and a wearable's file uploaded into a completed
session, as the Postgres app computes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from coachgraph.ids import to_global_id
from coachgraph.leaderboards.model import METRICS, PERIODS, Leaderboards, window
from coachgraph.leaderboards.redis import RedisLeaderboards
from coachgraph.runtime import Resources
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory
from tests.wearables import Point, fit_file

NOW = datetime(2030, 5, 15, 12, 0, tzinfo=UTC)  # a Wednesday: the week began on May 13
DAY = timedelta(days=1)

BOARD = """query($p: ID!, $m: LeaderboardMetric!, $t: LeaderboardPeriod!, $first: Int) {
  leaderboard(programId: $p, metric: $m, period: $t, first: $first) {
    rank value athlete { id name } } }"""


class Made:
    """Sessions made, remembered so the test can rank them itself."""

    def __init__(self, factory: Factory) -> None:
        self.factory = factory
        self.sessions: list[tuple[int, int, datetime, float, list[float]]] = []
        self.enrolled: set[tuple[int, int]] = set()

    async def completed(
        self,
        coach: int,
        athlete: int,
        program: int,
        ended: datetime,
        minutes: float,
        power: list[float] | None = None,
    ) -> None:
        await self.factory.session_at(
            coach,
            athlete,
            scheduled_at=ended - timedelta(hours=2),
            status="COMPLETED",
            program_id=program,
            ended_at=ended,
            minutes=minutes,
            power=power,
        )
        self.sessions.append((program, athlete, ended, minutes, power or []))

    def expected(
        self, program: int, metric: str, period: str, now: datetime
    ) -> list[tuple[int, float]]:
        start, until = window(period, now)
        values: dict[int, list[tuple[float, list[float]]]] = {}
        for p, athlete, ended, minutes, power in self.sessions:
            if p != program or (athlete, p) not in self.enrolled:
                continue
            if start is not None and until is not None and not start <= ended < until:
                continue
            values.setdefault(athlete, []).append((minutes, power))
        ranked = []
        for athlete, done in values.items():
            samples = [w for _, power in done for w in power]
            value = {
                "TRAINING_MINUTES": sum(m for m, _ in done),
                "SESSIONS_COMPLETED": float(len(done)),
                "AVG_POWER": sum(samples) / len(samples) if samples else None,
            }[metric]
            if value is not None:
                ranked.append((athlete, value))
        return sorted(ranked, key=lambda e: (-e[1], e[0]))


async def build(factory: Factory) -> tuple[Made, int, int, list[int]]:
    made = Made(factory)
    coach = await factory.coach(capacity=20)
    program = (await factory.program(coach.id, [])).id
    other = (await factory.program(coach.id, [])).id
    athletes = [(await factory.athlete(name=f"Rider {i}")).id for i in range(7)]
    for a in athletes:
        await factory.assign(coach.id, a)
    for a in athletes[:5]:
        await factory.enroll(a, program)
        made.enrolled.add((a, program))
    await factory.enroll(athletes[0], other)
    made.enrolled.add((athletes[0], other))
    await factory.enroll(athletes[6], program)  # then drops out: off the board
    await factory.db.pool.execute(
        "UPDATE enrollments SET status = 'DROPPED' WHERE athlete_id = $1", athletes[6]
    )
    a0, a1, a2, a3, a4, a5, a6 = athletes
    at = NOW.replace(hour=0)
    await made.completed(coach.id, a0, program, at - DAY, 60, [200, 220])  # this week
    await made.completed(coach.id, a0, program, at - 12 * DAY, 30)  # this month
    await made.completed(coach.id, a0, program, at - 40 * DAY, 90, [150])  # before
    await made.completed(coach.id, a1, program, NOW - timedelta(hours=2), 60)
    await made.completed(coach.id, a1, program, at - DAY, 30, [250.5])
    await made.completed(coach.id, a2, program, at - 2 * DAY, 45)  # Monday 00:00: this week
    await made.completed(coach.id, a2, program, at - 2 * DAY - timedelta(minutes=1), 20)
    await made.completed(coach.id, a3, program, at - DAY, 60, [210])  # ties a0 on minutes
    await made.completed(coach.id, a4, program, at - 3 * DAY, 60, [210, 210])  # ties a3's power
    await made.completed(coach.id, a5, program, at - DAY, 500)  # not enrolled
    await made.completed(coach.id, a6, program, at - DAY, 500)  # dropped out
    await made.completed(coach.id, a0, other, at - DAY, 300)  # another program
    await factory.session_at(  # live and scheduled sessions do not count
        coach.id, a1, scheduled_at=at - DAY, status="LIVE", program_id=program
    )
    await factory.session_at(coach.id, a1, scheduled_at=at, program_id=program)
    return made, program, other, athletes


async def test_both_backends_rank_as_counted_here(boards: Leaderboards, factory: Factory) -> None:
    made, program, other, athletes = await build(factory)
    if isinstance(boards, RedisLeaderboards):
        for a, p in made.enrolled:  # (athlete, program)
            await boards.refresh(program_id=p, athlete_id=a, now=NOW)
    for p in (program, other):
        for metric in METRICS:
            for period in PERIODS:
                found = await boards.top(
                    program_id=p, metric=metric, period=period, limit=10, now=NOW
                )
                expected = made.expected(p, metric, period, NOW)
                assert [(e.athlete_id, e.value) for e in found] == expected, (p, metric, period)
    week = await boards.top(
        program_id=program, metric="TRAINING_MINUTES", period="WEEK", limit=10, now=NOW
    )
    # a1 90 min; a0 and a3 60 each (a0 first: the smaller id); a2 45 (Monday 00:00 counts,
    # its 20 minutes ending a minute before do not); a4 ended on Sunday
    assert [e.athlete_id for e in week] == [
        athletes[1],
        athletes[0],
        athletes[3],
        athletes[2],
    ]
    power = await boards.top(
        program_id=program, metric="AVG_POWER", period="MONTH", limit=2, now=NOW
    )
    assert [(e.athlete_id, e.value) for e in power] == [(athletes[1], 250.5), (athletes[0], 210.0)]
    # next week, nothing has been completed yet
    later = await boards.top(
        program_id=program, metric="SESSIONS_COMPLETED", period="WEEK", limit=10, now=NOW + 7 * DAY
    )
    assert later == []


async def test_redis_rebuild_equals_postgres(
    boards: Leaderboards, factory: Factory, db: Any
) -> None:
    made, program, _, _ = await build(factory)
    if isinstance(boards, RedisLeaderboards):
        stale = f"{boards.prefix}:{program}:TRAINING_MINUTES:ALL_TIME:all"
        await boards._redis.zadd(stale, {"0000000000000099999": -1e9})  # a place no record backs
        assert await boards.rebuild(now=NOW) > 0
    found = await boards.top(
        program_id=program, metric="TRAINING_MINUTES", period="ALL_TIME", limit=10, now=NOW
    )
    assert [(e.athlete_id, e.value) for e in found] == made.expected(
        program, "TRAINING_MINUTES", "ALL_TIME", NOW
    )


async def _end_session(client: GraphQLClient, session_id: int, coach_id: int) -> None:
    for mutation in ("startSession", "endSession"):
        body = await client(
            f"mutation($id: ID!) {{ {mutation}(id: $id) {{ __typename }} }}",
            {"id": to_global_id("TrainingSession", session_id)},
            token_for("coach", coach_id),
        )
        assert body["data"][mutation]["__typename"] == "TrainingSession", body


async def test_graphql_boards_follow_end_session_on_both_backends(
    gql: GraphQLClient, factory: Factory, redis_app: tuple[Any, Resources]
) -> None:
    transport = httpx.ASGITransport(app=redis_app[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        on_redis = GraphQLClient(http, redis_app[1].db)
        await redis_app[1].leaderboards.rebuild(now=datetime.now(UTC))  # type: ignore[union-attr]
        coach = await factory.coach(capacity=20)
        program = await factory.program(coach.id, [])
        riders = [await factory.athlete(name=f"Rider {i}") for i in range(4)]
        for i, rider in enumerate(riders):
            await factory.assign(coach.id, rider.id)
            body = await on_redis(
                "mutation($a: ID!, $p: ID!) { enroll(athleteId: $a, programId: $p) { __typename } }",
                {"a": to_global_id("Athlete", rider.id), "p": to_global_id("Program", program.id)},
                token_for("athlete", rider.id),
            )
            assert body["data"]["enroll"]["__typename"] == "Enrollment", body
            for _ in range(i % 3 + 1):  # 1, 2, 3, 1 sessions: riders 0 and 3 tie
                session = await factory.session_at(
                    coach.id, rider.id, scheduled_at=datetime.now(UTC), program_id=program.id
                )
                await _end_session(on_redis, session.id, coach.id)
        variables = {
            "p": to_global_id("Program", program.id),
            "m": "SESSIONS_COMPLETED",
            "t": "WEEK",
        }
        token = token_for("coach", coach.id)
        from_redis = await on_redis(BOARD, variables, token)
        from_postgres = await gql(BOARD, variables, token)
        assert "errors" not in from_redis, from_redis
        assert from_redis == from_postgres
        board = from_redis["data"]["leaderboard"]
        assert [(e["rank"], e["athlete"]["name"], e["value"]) for e in board] == [
            (1, "Rider 2", 3.0),
            (2, "Rider 1", 2.0),
            (3, "Rider 0", 1.0),
            (4, "Rider 3", 1.0),
        ]
        # an enrolled athlete sees its peers; others may not
        as_rider = await on_redis(BOARD, variables, token_for("athlete", riders[0].id))
        assert as_rider["data"] == from_redis["data"]
        outsider = await factory.athlete()
        for who in (
            token_for("athlete", outsider.id),
            token_for("coach", (await factory.coach()).id),
            None,
        ):
            refused = await gql(BOARD, variables, who)
            assert refused["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "UNAUTHENTICATED"), (
                refused
            )
        for first in (-1, 101):
            bad = await gql(BOARD, variables | {"first": first}, token)
            assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert (await gql(BOARD, variables | {"first": 2}, token))["data"]["leaderboard"] == board[
            :2
        ]


async def test_a_redis_without_boards_is_filled_at_start(
    factory: Factory, boards_redis_url: str
) -> None:
    made, program, _, _ = await build(factory)
    fresh = RedisLeaderboards(factory.db, boards_redis_url, prefix=f"fresh-{program}-{id(made)}")
    await fresh.start()
    try:
        found = await fresh.top(
            program_id=program, metric="SESSIONS_COMPLETED", period="ALL_TIME", limit=10, now=NOW
        )
        expected = made.expected(program, "SESSIONS_COMPLETED", "ALL_TIME", NOW)
        assert [(e.athlete_id, e.value) for e in found] == expected and expected
        assert await fresh._redis.exists(fresh.marker)
    finally:
        await fresh._redis.unlink(
            *[k async for k in fresh._redis.scan_iter(match=f"{fresh.prefix}:*")]
        )
        await fresh.close()


async def test_reindex_rebuilds_the_redis_boards(
    factory: Factory, pg_dsn: str, boards_redis_url: str, tmp_path: Any
) -> None:
    from tests.conftest import SECRET
    from tests.servers import cli_env
    from tests.test_cli_commands import cli

    made, program, _, _ = await build(factory)
    env = cli_env(tmp_path, DATABASE_URL=pg_dsn, COACHGRAPH_JWT_SECRET=SECRET)
    code, out, err = await cli("reindex", "--leaderboards", env=env)
    assert code == 0 and "computed in Postgres at each request" in out, (out, err)
    code, out, err = await cli(
        "reindex", "--leaderboards", env=env | {"REDIS_URL": boards_redis_url}
    )
    assert code == 0 and "leaderboards rebuilt in redis" in out, (out, err)
    boards = RedisLeaderboards(factory.db, boards_redis_url)  # the CLI's default prefix
    await boards.start()
    try:
        found = await boards.top(
            program_id=program, metric="TRAINING_MINUTES", period="ALL_TIME", limit=10, now=NOW
        )
        expected = made.expected(program, "TRAINING_MINUTES", "ALL_TIME", NOW)
        assert [(e.athlete_id, e.value) for e in found] == expected and expected
    finally:
        await boards.close()


async def test_boards_follow_a_file_uploaded_into_a_completed_session_on_both_backends(
    gql: GraphQLClient, factory: Factory, redis_app: tuple[Any, Resources]
) -> None:
    """A wearable's file comes after the ride, into a COMPLETED session: its power changes
    AVG_POWER, and Redis must then hold what Postgres computes, on every board."""
    transport = httpx.ASGITransport(app=redis_app[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        on_redis = GraphQLClient(http, redis_app[1].db)
        coach = await factory.coach(capacity=20)
        program = await factory.program(coach.id, [])
        riders = [await factory.athlete(name=f"Rider {i}") for i in range(3)]
        now = datetime.now(UTC).replace(microsecond=0)
        ridden = []
        for rider, power in zip(riders, ([200.0, 220.0], None, [150.0]), strict=True):
            await factory.assign(coach.id, rider.id)
            await factory.enroll(rider.id, program.id)
            ridden.append(
                await factory.session_at(
                    coach.id,
                    rider.id,
                    scheduled_at=now - timedelta(hours=2),
                    status="COMPLETED",
                    program_id=program.id,
                    ended_at=now - timedelta(minutes=5),
                    power=power,
                )
            )
        await redis_app[1].leaderboards.rebuild(now=datetime.now(UTC))  # type: ignore[union-attr]
        start = now - timedelta(minutes=65)  # Rider 1's ride: an hour to five minutes ago
        points = [Point(start + timedelta(seconds=10 + i), power=300 + i) for i in range(30)]
        uploaded = await http.post(
            f"/ingest/sessions/{to_global_id('TrainingSession', ridden[1].id)}/files",
            content=fit_file(points),
            headers={"Authorization": f"Bearer {token_for('coach', coach.id)}"},
        )
        assert uploaded.status_code == 200, uploaded.text
        token = token_for("coach", coach.id)
        for metric in METRICS:
            for period in PERIODS:
                variables = {"p": to_global_id("Program", program.id), "m": metric, "t": period}
                from_redis = await on_redis(BOARD, variables, token)
                from_postgres = await gql(BOARD, variables, token)
                assert "errors" not in from_redis, from_redis
                assert from_redis == from_postgres, (metric, period)
        board = from_postgres["data"]["leaderboard"]  # AVG_POWER, ALL_TIME
        assert [(e["athlete"]["name"], e["value"]) for e in board] == [
            ("Rider 1", 314.5),
            ("Rider 0", 210.0),
            ("Rider 2", 150.0),
        ]
