"""The blend's weights fitted from the deployment's own history (graph/blend.py): content
weights, exactly, with little history or no gain; the learned term where behaviour tells the
coaches apart and the profile does not; what matchCoaches then ranks by."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from coachgraph.config import Limits
from coachgraph.graph import blend, recommend
from coachgraph.graph.collab import CollabVectors
from coachgraph.ids import decode_id
from coachgraph.ids import to_global_id as gid
from coachgraph.runtime import Resources
from coachgraph.stores import collab_weights
from coachgraph.stores.db import Database
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory
from tests.graph.test_contract import goals

DIMS = 64


async def fit(db: Database, *, samples: int = 20, min_samples: int = 10) -> Any:
    limits = Limits()
    return await blend.fit(
        db,
        samples=samples,
        min_samples=min_samples,
        share_percent=50,  # these small worlds: half their history held out
        dims=DIMS,
        half_life_days=limits.collab_half_life_days,
        candidates=limits.match_candidates,
        learned_candidates=limits.collab_candidates,
    )


async def styled_world(factory: Factory, *, athletes: int = 40) -> tuple[int, list[int]]:
    """Twenty coaches teaching one goal alike, in one city (no profile field tells them
    apart), half of style A (odd ids) and half of style B; each athlete is of a style, enrolls
    in its style's program and chooses a coach of its style. Returns a new athlete of style A
    and the A coaches."""
    goal = await factory.skill(name="Goal")
    coaches = []
    for i in range(20):
        coach = await factory.coach(name=f"Coach {i:02}", city="Lyon", capacity=50)
        await factory.teach(coach.id, goal.id, level=3)
        coaches.append(coach.id)
    style = {"A": coaches[0::2], "B": coaches[1::2]}
    lead = await factory.coach(name="Lead", capacity=0)
    program = {s: (await factory.program(lead.id, [goal.id])).id for s in style}
    for n in range(athletes):
        s = "A" if n % 2 == 0 else "B"
        athlete = await factory.athlete(name=f"Athlete {n}", city="Lyon")
        await goals(factory, athlete.id, [goal.id])
        await factory.enroll(athlete.id, program[s])
        await factory.assign(style[s][(n // 2) % 10], athlete.id)
    seeker = await factory.athlete(name="Seeker", city="Lyon", looking_for_coach=True)
    await goals(factory, seeker.id, [goal.id])
    await factory.enroll(seeker.id, program["A"])
    return seeker.id, style["A"]


async def rebuild_vectors(db: Database) -> None:
    limits = Limits()
    await CollabVectors(
        db, dims=DIMS, chunk=500, half_life_days=limits.collab_half_life_days
    ).rebuild()


async def test_little_history_falls_back_to_the_content_weights_exactly(
    db: Database, factory: Factory
) -> None:
    await styled_world(factory, athletes=6)
    fitted = await fit(db, min_samples=10)
    assert fitted.samples == 3  # half the six athletes with a coach
    assert blend.weights_of(fitted) == recommend.CONTENT
    assert "3 assignments to hold out, fewer than 10" in fitted.reason
    async with db.pool.acquire() as conn:
        stored = await collab_weights.latest(conn)
        assert stored is not None and blend.weights_of(stored) == recommend.CONTENT
        assert await blend.current(conn, ttl=60) == recommend.CONTENT
        # nothing stored at all: content too
        await conn.execute("TRUNCATE collab_blend_weights")
        blend.forget()
        assert await blend.current(conn, ttl=60) == recommend.CONTENT


async def test_the_fit_weighs_the_learned_term_where_behaviour_tells_coaches_apart(
    db: Database, factory: Factory
) -> None:
    await styled_world(factory)
    cases = await blend.held_out_cases(
        db,
        samples=20,  # the latest half: the other half's choices are the history
        dims=DIMS,
        half_life_days=Limits().collab_half_life_days,
        candidates=30,
        learned_candidates=30,
    )
    assert len(cases) == 20
    # held out: the chosen coach is a candidate again, and no more the athlete's coach
    assert all(c.coach not in c.content.athlete.coaches for c in cases)
    assert all(c.coach in {x.info.id for x in c.content.candidates} for c in cases)
    content = blend.score(cases, recommend.CONTENT)
    learned = blend.score(cases, recommend.WEIGHTS)
    # content: ties by id, the ten lowest, five of each style; the learned term: the ten of
    # the athlete's style, the held-out coach among them
    assert content.hit == 0.5
    assert learned.hit == 1.0
    fitted = await fit(db)
    assert fitted.weights[4] > 0 and fitted.chosen_hit == 1.0 and fitted.content_hit == 0.5
    assert fitted.samples == 20 and len(fitted.grid) == len(blend.grid())


async def test_no_gain_keeps_the_content_weights(db: Database, factory: Factory) -> None:
    """Athletes whose choices follow no behaviour: every style enrolls in the same program."""
    goal = await factory.skill(name="Goal")
    coaches = []
    for i in range(12):
        coach = await factory.coach(name=f"Coach {i:02}", city="Lyon", capacity=50)
        await factory.teach(coach.id, goal.id, level=3 if i < 6 else 1)
        coaches.append(coach.id)
    lead = await factory.coach(name="Lead", capacity=0)
    program = await factory.program(lead.id, [goal.id])
    for n in range(24):
        athlete = await factory.athlete(name=f"Athlete {n}", city="Lyon")
        await goals(factory, athlete.id, [goal.id])
        await factory.enroll(athlete.id, program.id)
        await factory.assign(coaches[n % 6], athlete.id)  # the better-teaching half
    fitted = await fit(db, samples=12, min_samples=10)  # the latest half
    assert blend.weights_of(fitted) == recommend.CONTENT, fitted.reason
    assert fitted.content_hit == fitted.chosen_hit


async def test_match_coaches_ranks_by_the_stored_fit(
    gql: GraphQLClient, factory: Factory, app_resources: tuple[Any, Resources], db: Database
) -> None:
    resources = app_resources[1]
    seeker, style_a = await styled_world(factory)
    await resources.projector.rebuild()
    await resources.projector.catch_up()
    await rebuild_vectors(db)
    query = """query($a: ID!) { matchCoaches(athleteId: $a, first: 10) { coach { id }
        reasons { summary } } }"""
    token = token_for("athlete", seeker)

    async def ranked() -> tuple[list[int], list[str], int]:
        body, statements = await gql.statements(query, {"a": gid("Athlete", seeker)}, token=token)
        assert "errors" not in body, body
        found = body["data"]["matchCoaches"]
        ids = [decode_id(m["coach"]["id"], "Coach") for m in found]
        return ids, [m["reasons"]["summary"] for m in found], statements

    # no fit stored: the content ranking (ties by id), and no statement for the vectors
    await ranked()  # the weights are read once, then cached
    content, _, content_statements = await ranked()
    before = resources.settings
    resources.settings = replace(before, learned_matching=False)
    try:
        off, _, off_statements = await ranked()
    finally:
        resources.settings = before
    assert content == off and content_statements == off_statements
    assert set(content) != set(style_a)

    await fit(db)  # the learned term wins on this history
    learned, summaries, _ = await ranked()
    assert set(learned) == set(style_a)
    assert any("chosen by" in s for s in summaries)
