"""Media under lists load through one statement per level, whatever the number of owners."""

from __future__ import annotations

from coachgraph.stores import media
from tests.conftest import GraphQLClient, token_for
from tests.factories import Factory

QUERY = """{ programs(first: 100) { edges { node { title media { id kind url }
  coach { name avatar { id url } } } } } }"""


async def ready_media(factory: Factory, owner_type: str, owner_id: int, kind: str) -> None:
    async with factory.db.transaction() as conn:
        row = await media.create(
            conn,
            owner_type=owner_type,
            owner_id=owner_id,
            kind=kind,
            content_type="image/png",
            size_bytes=10,
            storage_key=f"{kind.lower()}/{owner_type.lower()}-{owner_id}/{'a' * 31}{kind[0].lower()}.png",
            created_by=None,
        )
        await media.mark_ready(conn, media_id=row.id, checksum="sha256:x")


async def test_media_statements_do_not_grow_with_owners(
    gql: GraphQLClient, factory: Factory
) -> None:
    counts = []
    for size in (3, 12):
        await factory.db.pool.execute("TRUNCATE coaches, media, outbox RESTART IDENTITY CASCADE")
        for _ in range(size):
            coach = await factory.coach()
            program = await factory.program(coach.id, [])
            await ready_media(factory, "Coach", coach.id, "AVATAR")
            await ready_media(factory, "Program", program.id, "IMAGE")
        await gql(QUERY, token=token_for("admin"))
        body, statements = await gql.statements(QUERY, token=token_for("admin"))
        assert "errors" not in body, body
        edges = body["data"]["programs"]["edges"]
        assert len(edges) == size
        assert all(e["node"]["media"][0]["url"] for e in edges)
        assert all(e["node"]["coach"]["avatar"]["url"] for e in edges)
        counts.append(statements)
    assert counts[0] == counts[1], counts
    # programs, their media, their coaches, the coaches' avatars
    assert counts[0] <= 4, counts
