"""One contract suite for both graph backends: hand-built graphs with obvious answers."""

from __future__ import annotations

from coachgraph.config import Limits
from coachgraph.graph import recommend
from coachgraph.graph.collab import CollabVectors
from coachgraph.graph.model import GraphStore
from coachgraph.graph.projector import CHANNEL
from coachgraph.stores.db import Database
from tests.factories import Factory
from tests.graph.conftest import projector
from tests.servers import until


async def project(db: Database, graph: GraphStore) -> None:
    p = projector(db, graph)
    await p.rebuild()
    await p.catch_up()


async def goals(factory: Factory, athlete_id: int, skill_ids: list[int]) -> None:
    from coachgraph.stores import athletes

    async with factory.db.transaction() as conn:
        await athletes.set_goals(conn, athlete_id=athlete_id, skill_ids=skill_ids)


async def test_coach_teaching_both_goals_beats_one_teaching_one(
    db: Database, factory: Factory, graph: GraphStore
) -> None:
    g1, g2, other = await factory.skill(), await factory.skill(), await factory.skill()
    athlete = await factory.athlete(city="Oslo")
    await goals(factory, athlete.id, [g1.id, g2.id])
    both = await factory.coach(name="Both", city="Rome")
    one = await factory.coach(name="One", city="Rome")
    unrelated = await factory.coach(name="Unrelated")
    for skill in (g1, g2):
        await factory.teach(both.id, skill.id, level=3)
    await factory.teach(one.id, g1.id, level=5)
    await factory.teach(unrelated.id, other.id, level=5)
    await project(db, graph)

    found = await graph.coach_neighbourhood(athlete.id, limit=100)
    assert found is not None
    ranked = recommend.rank_coaches(found, 10)
    assert [m.id for m in ranked] == [both.id, one.id]
    best = ranked[0].reasons
    assert best.goals_covered == tuple(sorted((g1.id, g2.id)))
    assert "2 of 2 goals" in best.summary
    assert ranked[0].score > ranked[1].score


async def test_hard_constraints(db: Database, factory: Factory, graph: GraphStore) -> None:
    goal = await factory.skill()
    athlete = await factory.athlete(sport="running")
    await goals(factory, athlete.id, [goal.id])
    full = await factory.coach(name="Full", capacity=1)
    await factory.assign(full.id, (await factory.athlete()).id)
    mine = await factory.coach(name="Mine")
    await factory.assign(mine.id, athlete.id)
    swimmer = await factory.coach(name="Swimmer", sports=["swimming"])
    ok = await factory.coach(name="Ok")
    for coach in (full, mine, swimmer, ok):
        await factory.teach(coach.id, goal.id)
    await project(db, graph)
    found = await graph.coach_neighbourhood(athlete.id, limit=100)
    assert found is not None
    assert [m.id for m in recommend.rank_coaches(found, 10)] == [ok.id]


async def test_similar_athletes_break_ties(
    db: Database, factory: Factory, graph: GraphStore
) -> None:
    goal = await factory.skill()
    athlete = await factory.athlete()
    await goals(factory, athlete.id, [goal.id])
    plain = await factory.coach(name="Plain")
    popular = await factory.coach(name="Popular")
    for coach in (plain, popular):
        await factory.teach(coach.id, goal.id, level=4)
    peer = await factory.athlete()
    await goals(factory, peer.id, [goal.id])
    await factory.assign(popular.id, peer.id)
    await project(db, graph)
    found = await graph.coach_neighbourhood(athlete.id, limit=100)
    assert found is not None
    # the content ranking (matchAthletes' weights): the Adamic-Adar term
    ranked = recommend.rank_coaches(found, 10, None, recommend.CONTENT)
    assert [m.id for m in ranked] == [popular.id, plain.id]
    assert ranked[0].reasons.similar_athletes == 1
    # the blend in use (no Adamic-Adar weight): the learned vectors, from PostgreSQL
    vectors = CollabVectors(db, dims=32, chunk=10, half_life_days=365)
    await vectors.rebuild()
    learned = await vectors.similarity(athlete.id, [c.info.id for c in found.candidates])
    ranked = recommend.rank_coaches(found, 10, learned, recommend.WEIGHTS)
    assert [m.id for m in ranked] == [popular.id, plain.id]
    assert "chosen by 1 athlete with goals like yours" in ranked[0].reasons.summary


async def test_match_athletes_only_looking_same_sport(
    db: Database, factory: Factory, graph: GraphStore
) -> None:
    goal, extra = await factory.skill(), await factory.skill()
    coach = await factory.coach()
    await factory.teach(coach.id, goal.id, level=5)
    await factory.teach(coach.id, extra.id, level=5)
    looking_both = await factory.athlete(looking_for_coach=True)
    looking_one = await factory.athlete(looking_for_coach=True)
    hidden = await factory.athlete(looking_for_coach=False)
    swimmer = await factory.athlete(looking_for_coach=True, sport="swimming")
    await goals(factory, looking_both.id, [goal.id, extra.id])
    await goals(factory, looking_one.id, [goal.id, (await factory.skill()).id])
    for other in (hidden, swimmer):
        await goals(factory, other.id, [goal.id])
    await project(db, graph)
    found = await graph.roster_neighbourhood(coach.id, limit=100)
    assert found is not None
    ranked = recommend.rank_athletes(found, 10)
    assert [m.id for m in ranked] == [looking_both.id, looking_one.id]


async def test_programs_and_skill_path(db: Database, factory: Factory, graph: GraphStore) -> None:
    base = await factory.skill(name="Base")
    mid = await factory.skill(name="Mid", prerequisites=[base.id])
    side = await factory.skill(name="Side", prerequisites=[base.id])
    top = await factory.skill(name="Top", prerequisites=[mid.id, side.id])
    athlete = await factory.athlete(level=2)
    await factory.learn(athlete.id, base.id)
    await goals(factory, athlete.id, [top.id])
    coach = await factory.coach()
    good = await factory.program(coach.id, [mid.id, side.id, top.id], level=2)
    partial = await factory.program(coach.id, [top.id], level=3)
    too_hard = await factory.program(coach.id, [top.id], level=5)
    await project(db, graph)

    found = await graph.program_neighbourhood(athlete.id, limit=50)
    assert found is not None
    ranked = recommend.rank_programs(found, 5)
    assert too_hard.id not in [m.id for m in ranked]
    assert {m.id for m in ranked} == {good.id, partial.id}

    path = await graph.path_neighbourhood(athlete.id, top.id)
    assert path is not None
    skills, programs = recommend.skill_path(path, max_programs=Limits().skill_path_max_programs)
    assert skills == [mid.id, side.id, top.id]  # Base is known; prerequisites first
    assert programs[0] == good.id
    assert recommend.skill_path(path, max_programs=1)[1] == [good.id]


async def test_projection_follows_changes(
    db: Database, factory: Factory, graph: GraphStore
) -> None:
    goal = await factory.skill()
    athlete = await factory.athlete()
    coach = await factory.coach()
    p = projector(db, graph)
    await p.rebuild()
    await goals(factory, athlete.id, [goal.id])
    await factory.teach(coach.id, goal.id)
    await p.catch_up()
    found = await graph.coach_neighbourhood(athlete.id, limit=10)
    assert found is not None and [c.info.id for c in found.candidates] == [coach.id]
    await factory.assign(coach.id, athlete.id)  # now its coach: no longer a candidate
    await p.catch_up()
    found = await graph.coach_neighbourhood(athlete.id, limit=10)
    assert found is not None and found.candidates == ()
    assert found.athlete.coaches == (coach.id,)
    assert (await p.lag()).pending == 0


async def listeners(db: Database) -> int:
    """Connections LISTENing on the outbox channel, as the server itself lists them."""
    count: int = await db.pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle' AND query ILIKE $1",
        f"LISTEN%{CHANNEL}%",
    )
    return count


async def test_background_projector_is_woken_by_notify(db: Database, factory: Factory) -> None:
    from coachgraph.graph.memory import MemoryGraph

    graph = MemoryGraph()
    p = projector(db, graph)
    p.poll_seconds = 3600  # only NOTIFY can wake it within the wait below
    await p.rebuild()
    before = await listeners(db)
    p.start()
    try:
        # ready once Postgres lists its LISTEN (a NOTIFY before that would reach nobody)

        async def listening() -> bool:
            return await listeners(db) > before

        await until(listening, "the projector's LISTEN")
        coach = await factory.coach(name="Live")
        await until(lambda: coach.id in graph.coaches, "the NOTIFY to wake the projector")
        assert (await p.lag()).pending == 0
    finally:
        await p.stop()


async def test_goal_fit_for_personal_search(
    db: Database, factory: Factory, graph: GraphStore
) -> None:
    g1, g2, other = await factory.skill(), await factory.skill(), await factory.skill()
    athlete = await factory.athlete()
    await goals(factory, athlete.id, [g1.id, g2.id])
    both, one, none = await factory.coach(), await factory.coach(), await factory.coach()
    for skill in (g1, g2):
        await factory.teach(both.id, skill.id)
    await factory.teach(one.id, g2.id)
    await factory.teach(none.id, other.id)
    develops = await factory.program(none.id, [g1.id, other.id])
    unrelated = await factory.program(none.id, [other.id])
    no_goals = await factory.athlete()
    await project(db, graph)

    fit = await graph.goal_fit(
        athlete.id,
        coach_ids=[both.id, one.id, none.id],
        program_ids=[develops.id, unrelated.id],
    )
    assert fit.goals == tuple(sorted((g1.id, g2.id)))
    assert fit.coaches == {both.id: fit.goals, one.id: (g2.id,)}
    assert fit.programs == {develops.id: (g1.id,)}
    assert (fit.share("COACH", both.id), fit.share("COACH", one.id)) == (1.0, 0.5)
    assert fit.share("COACH", none.id) == 0.0 == fit.share("SKILL", g1.id)
    # only the coaches asked about are looked at; an athlete without goals fits nothing
    assert (await graph.goal_fit(athlete.id, coach_ids=[one.id], program_ids=[])).coaches == {
        one.id: (g2.id,)
    }
    empty = await graph.goal_fit(no_goals.id, coach_ids=[both.id], program_ids=[develops.id])
    assert (empty.goals, empty.coaches, empty.programs) == ((), {}, {})
    missing = await graph.goal_fit(10**9, coach_ids=[both.id], program_ids=[])
    assert missing.goals == ()
