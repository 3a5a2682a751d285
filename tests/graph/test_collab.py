"""The learned collaborative vectors (graph/collab.py): what they rank, that an event moves
them exactly as a full rebuild would, that a cut-off rebuild resumes, and that both graph
backends rank the same with them."""

from __future__ import annotations

import math

from coachgraph.config import Limits
from coachgraph.graph import recommend
from coachgraph.graph.collab import CollabVectors
from coachgraph.graph.model import GraphStore
from coachgraph.graph.projector import affected
from coachgraph.stores import collab, graph_source, programs, sessions
from coachgraph.stores.db import Database
from tests.factories import Factory
from tests.graph.test_contract import goals, project

DIMS = 64


def vectors(db: Database, chunk: int = 2) -> CollabVectors:
    limits = Limits()
    return CollabVectors(db, dims=DIMS, chunk=chunk, half_life_days=limits.collab_half_life_days)


async def enroll(factory: Factory, athlete_id: int, program_id: int) -> None:
    async with factory.db.transaction() as conn:
        await programs.enroll(conn, athlete_id=athlete_id, program_id=program_id)


async def every_vector(db: Database) -> dict[tuple[str, int], list[float]]:
    rows = await db.pool.fetch("SELECT kind, id, vec::real[] AS v FROM collab_vectors")
    return {(r["kind"], r["id"]): list(r["v"]) for r in rows}


def close(a: dict[tuple[str, int], list[float]], b: dict[tuple[str, int], list[float]]) -> bool:
    """Equal up to float32 rounding; a vector summed to zero counts as absent."""
    keys = {k for k, v in a.items() if any(abs(x) > 1e-5 for x in v)} | {
        k for k, v in b.items() if any(abs(x) > 1e-5 for x in v)
    }
    zero = [0.0] * DIMS
    return all(
        math.isclose(x, y, abs_tol=1e-4)
        for k in keys
        for x, y in zip(a.get(k, zero), b.get(k, zero), strict=True)
    )


async def taste_world(factory: Factory) -> tuple[int, int, int, list[int]]:
    """Two coaches teaching the same goal alike; the athlete enrolled in a program that the
    athletes of `liked` took too, while those of `other` took another."""
    goal = await factory.skill(name="Goal")
    athlete = await factory.athlete(name="Seeker", looking_for_coach=True)
    await goals(factory, athlete.id, [goal.id])
    liked = await factory.coach(name="Liked")
    other = await factory.coach(name="Other")
    lead = await factory.coach(name="Lead", capacity=0)  # leads the program; no room
    for coach in (liked, other):
        await factory.teach(coach.id, goal.id, level=3)
    program = await factory.program(lead.id, [goal.id])
    elsewhere = await factory.program(lead.id, [goal.id])
    await enroll(factory, athlete.id, program.id)
    mates = []
    for i in range(3):
        mate = await factory.athlete(name=f"Mate {i}")
        await goals(factory, mate.id, [goal.id])
        await factory.assign(liked.id, mate.id)
        await enroll(factory, mate.id, program.id)
        mates.append(mate.id)
    for i in range(3):
        stranger = await factory.athlete(name=f"Stranger {i}")
        await goals(factory, stranger.id, [goal.id])
        await factory.assign(other.id, stranger.id)
        await enroll(factory, stranger.id, elsewhere.id)
    return athlete.id, liked.id, other.id, mates


async def test_the_learned_signal_ranks_the_coach_of_athletes_who_behave_alike(
    db: Database, factory: Factory, graph: GraphStore
) -> None:
    athlete, liked, other, _ = await taste_world(factory)
    await project(db, graph)
    store = vectors(db)
    await store.rebuild()

    found = await graph.coach_neighbourhood(athlete, limit=100)
    assert found is not None
    content = recommend.rank_coaches(found, 10, None, recommend.CONTENT)
    # content alone cannot tell them apart: equal scores, ties by id
    assert [m.id for m in content] == [liked, other] and content[0].score == content[1].score
    learned = await store.similarity(athlete, [liked, other])
    assert learned[liked] > learned[other]
    ranked = recommend.rank_coaches(found, 10, learned, recommend.WEIGHTS)
    assert [m.id for m in ranked] == [liked, other]
    assert ranked[0].score > ranked[1].score
    assert "chosen by 3 athletes with goals like yours" in ranked[0].reasons.summary
    # both coaches' athletes want its goal: the reason is true of each
    assert "chosen by 3 athletes with goals like yours" in ranked[1].reasons.summary


async def test_events_move_the_vectors_as_a_rebuild_would(db: Database, factory: Factory) -> None:
    athlete, liked, _, mates = await taste_world(factory)
    store = vectors(db)
    await store.rebuild()
    offset = await graph_source.horizon(db.pool)
    # an assignment, a completed session, a dropped program and new goals, fed as the
    # projector feeds them: the records the outbox events name
    await factory.assign(liked, athlete)
    session = await factory.session(liked, athlete)
    async with db.transaction() as conn:
        await sessions.transition(conn, session_id=session.id, to="LIVE")
        await sessions.transition(conn, session_id=session.id, to="COMPLETED")
    await goals(factory, mates[0], [])
    await db.pool.execute(
        "UPDATE enrollments SET status = 'DROPPED' WHERE athlete_id = $1", mates[1]
    )
    before = await every_vector(db)
    dirty = affected(await graph_source.events_after(db.pool, position=offset, limit=100))[0]
    assert {athlete, mates[0]} <= dirty["athlete"]
    dirty["athlete"].add(mates[1])  # the drop was written without an event
    await store.apply(dirty)
    moved = await every_vector(db)
    assert not close(before, moved)
    await store.apply(dirty)  # a replay changes nothing
    assert close(moved, await every_vector(db))
    weight = await db.pool.fetchval(
        "SELECT weight FROM collab_links WHERE athlete_id = $1 AND kind = 'coach'", athlete
    )
    plain = await db.pool.fetchval(
        "SELECT weight FROM collab_links WHERE athlete_id = $1 AND kind = 'coach'", mates[2]
    )
    assert weight > plain  # the completed session weighs its choice

    await store.rebuild()
    assert close(moved, await every_vector(db))


async def test_a_cut_off_rebuild_resumes_where_it_stopped(db: Database, factory: Factory) -> None:
    athlete, liked, _, mates = await taste_world(factory)
    store = vectors(db, chunk=2)
    await store.rebuild()
    whole = await every_vector(db)

    # the state a rebuild leaves when it dies after its first chunks: the athletes up to
    # mates[0] done, the rest not; an assignment made meanwhile
    async with db.transaction() as conn:
        position = await graph_source.horizon(conn)
        await collab.clear(conn)
        done = await collab.behaviour_after(conn, 0, 1_000)
        done = [b for b in done if b.id <= mates[0]]
        await store._move(conn, [b.id for b in done], done)
        await collab.save_rebuild(conn, "collab", after=mates[0], dims=DIMS, position=position)
    await factory.assign(liked, athlete)
    partial = await every_vector(db)
    assert not close(partial, whole)

    processed = await store.rebuild()
    assert processed == await factory.count("athletes") - len(done)
    assert await db.pool.fetchval("SELECT count(*) FROM collab_rebuild") == 0
    resumed = await every_vector(db)
    await store.rebuild()  # from scratch, with the assignment
    assert close(resumed, await every_vector(db))


async def test_recommend_programs_offers_the_nearest_when_nothing_fits(
    db: Database, factory: Factory, graph: GraphStore
) -> None:
    """Same answer from both backends: the fallback reads the records."""
    g1, g2, g3 = await factory.skill(), await factory.skill(), await factory.skill()
    athlete = await factory.athlete(level=1)
    await goals(factory, athlete.id, [g1.id, g2.id, g3.id])
    coach = await factory.coach()
    hard = await factory.program(coach.id, [g1.id, g2.id], level=5)
    nearer = await factory.program(coach.id, [g1.id], level=3)
    await factory.program(coach.id, [g1.id], level=4, sport="rowing")
    await project(db, graph)
    found = await graph.program_neighbourhood(athlete.id, limit=30)
    assert found is not None and found.candidates == ()

    near = await collab.nearest_programs(db.pool, athlete.id, limit=30)
    assert [p.id for p in near] == [hard.id, nearer.id]  # most goals first; other sports never


async def test_the_learned_candidates_join_the_graphs_under_its_constraints(
    db: Database, factory: Factory, graph: GraphStore
) -> None:
    """A coach the pre-score would never offer (it teaches none of the goals) is weighed when
    the vectors put it near; a full one, another sport's or the athlete's own never is."""
    goal, other_skill = await factory.skill(), await factory.skill()
    athlete = await factory.athlete()
    await goals(factory, athlete.id, [goal.id])
    teaching = await factory.coach()
    await factory.teach(teaching.id, goal.id)
    near = await factory.coach()
    await factory.teach(near.id, other_skill.id)
    full = await factory.coach(capacity=0)
    rowing = await factory.coach(sports=["rowing"])
    mine = await factory.coach()
    await factory.assign(mine.id, athlete.id)
    await project(db, graph)

    found = await graph.coach_neighbourhood(athlete.id, limit=30)
    assert found is not None and [c.info.id for c in found.candidates] == [teaching.id]
    asked = [near.id, full.id, rowing.id, mine.id, 10_000]
    found = await graph.coach_neighbourhood(athlete.id, limit=30, include=asked)
    assert found is not None
    assert [c.info.id for c in found.candidates] == [teaching.id, near.id]
    assert found.candidates[1].teaches == {}
    ranked = recommend.rank_coaches(found, 10, {near.id: 0.9, teaching.id: 0.1}, recommend.WEIGHTS)
    assert {m.id for m in ranked} == {teaching.id, near.id}


async def test_the_hnsw_lookup_finds_what_the_exact_scan_finds_under_the_constraints(
    db: Database, factory: Factory
) -> None:
    """Vectors of the indexed dimension go through migration 0046's HNSW index (an iterative
    scan filtered by the hard constraints): the same coaches, in the same order, as the exact
    scan; never a full coach, another sport's, or the athlete's own."""
    goal = await factory.skill()
    athlete = await factory.athlete()
    await goals(factory, athlete.id, [goal.id])
    open_coaches = []
    for i in range(6):
        coach = await factory.coach(name=f"Open {i}", capacity=10)
        open_coaches.append(coach.id)
    full = await factory.coach(name="Full", capacity=2)
    mine = await factory.coach(name="Mine", capacity=10)
    rowing = await factory.coach(name="Rowing", sports=["rowing"], capacity=10)
    program = await factory.program(mine.id, [goal.id])
    await enroll(factory, athlete.id, program.id)
    await factory.assign(mine.id, athlete.id)
    for n, coach in enumerate([*open_coaches, full.id, mine.id]):
        for k in range(2):
            other = await factory.athlete(name=f"Athlete {n}-{k}")
            await goals(factory, other.id, [goal.id])
            if (n + k) % 2:
                await enroll(factory, other.id, program.id)
            await factory.assign(coach, other.id)
    rower = await factory.athlete(name="Rower", sport="rowing")
    await factory.assign(rowing.id, rower.id)
    store = CollabVectors(db, dims=collab.INDEXED_DIMS, chunk=50, half_life_days=365)
    await store.rebuild()

    async with db.pool.acquire() as conn:
        plan = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'collab_coach_hnsw'"
        )
        assert plan == 1
        for limit in (3, 30):
            indexed = await collab.nearest_coaches(conn, athlete.id, limit=limit)
            exact = await collab.nearest_coaches(conn, athlete.id, limit=limit, exact=True)
            assert indexed == exact
            assert not {full.id, mine.id, rowing.id} & set(indexed)
        assert sorted(indexed) == sorted(open_coaches)
        assert len(await collab.nearest_coaches(conn, athlete.id, limit=3)) == 3
