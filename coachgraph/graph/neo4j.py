"""The Bolt graph backend (Neo4j 5 at scale; FalkorDB in tests) over the async neo4j driver.

Every write is an auto-commit, single-statement, idempotent `UNWIND $rows ... MERGE`, so a
replayed batch converges and no explicit transaction is needed (FalkorDB's Bolt loses writes
made in explicit transactions). Each read is one Cypher query returning one neighbourhood.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from neo4j import AsyncDriver, AsyncGraphDatabase
from neo4j.exceptions import Neo4jError, ServiceUnavailable, SessionExpired, TransientError

from coachgraph import tracing
from coachgraph.errors import Unavailable
from coachgraph.graph.model import (
    AthleteCandidate,
    AthleteInfo,
    AthleteProfile,
    CoachCandidate,
    CoachInfo,
    CoachNeighbourhood,
    GoalFit,
    PathNeighbourhood,
    ProgramCandidate,
    ProgramInfo,
    ProgramNeighbourhood,
    RosterNeighbourhood,
    Snapshot,
)
from coachgraph.graph.recommend import CITY_PRESCORE
from coachgraph.stores.graph_source import States

log = logging.getLogger(__name__)
LABELS = ("Coach", "Athlete", "Skill", "Program")
STORE = "graph"

# the server is down, restarting, or not answering: the same statement may succeed later
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ServiceUnavailable,  # no server to route to, connection refused or lost
    SessionExpired,
    TransientError,  # e.g. Neo.TransientError.General.DatabaseUnavailable
    OSError,
    TimeoutError,
)

_PROFILE = """
MATCH (a:Athlete {id: $id})
OPTIONAL MATCH (a)-[h:HAS_SKILL]->(hs:Skill)
WITH a, collect([hs.id, h.level]) AS skills
OPTIONAL MATCH (a)-[:WANTS]->(g:Skill)
WITH a, skills, collect(g.id) AS goals
OPTIONAL MATCH (cur:Coach)-[:COACHES]->(a)
WITH a, skills, goals, collect(cur.id) AS current
OPTIONAL MATCH (a)-[:ENROLLED_IN]->(p:Program)
WITH a, skills, goals, current, collect(p.id) AS programs
WITH a, skills, goals, current, programs,
     CASE WHEN size(goals) > 0 THEN goals ELSE [x IN skills | x[0]] END AS targets
"""

_COACHES = (
    _PROFILE
    + """
OPTIONAL MATCH (c:Coach)-[tt0:TEACHES]->(t:Skill)
WHERE t.id IN targets AND a.sport IN c.sports AND c.active < c.capacity AND NOT c.id IN current
WITH a, skills, goals, current, programs, targets, c,
     sum(tt0.level) + CASE WHEN a.city IS NOT NULL AND c.city = a.city THEN $city_prescore ELSE 0 END AS hits
ORDER BY hits DESC, c.id
WITH a, skills, goals, current, programs, targets, collect(c)[0..$limit] AS cands
OPTIONAL MATCH (x:Coach)
WHERE x.id IN $include AND a.sport IN x.sports AND x.active < x.capacity AND NOT x.id IN current
WITH a, skills, goals, current, programs, targets, cands, collect(x) AS extra
WITH a, skills, goals, current, programs, targets,
     cands + [y IN extra WHERE NOT y.id IN [z IN cands | z.id]] AS cands
UNWIND (CASE WHEN size(cands) = 0 THEN [null] ELSE cands END) AS c
OPTIONAL MATCH (c)-[tt:TEACHES]->(ts:Skill)
WITH a, skills, goals, current, programs, targets, c, collect([ts.id, tt.level]) AS taught
OPTIONAL MATCH (c)-[:COACHES]->(s:Athlete)-[:WANTS]->(k:Skill) WHERE k.id IN targets
WITH a, skills, goals, current, programs, c, taught, collect([s.id, k.id]) AS similar
RETURN a.sport AS sport, a.city AS city, a.level AS level, a.looking AS looking,
       skills, goals, current, programs,
       collect([c.id, c.sports, c.city, c.capacity, c.active, taught, similar]) AS candidates
"""
)

_PROGRAMS = (
    _PROFILE
    + """
OPTIONAL MATCH (p:Program)-[:DEVELOPS]->(t:Skill)
WHERE t.id IN targets AND p.sport = a.sport AND p.level <= a.level + 1 AND NOT p.id IN programs
WITH a, skills, goals, current, programs, targets, p, count(t) AS hits
ORDER BY hits DESC, p.id
WITH a, skills, goals, current, programs, targets, collect(p)[0..$limit] AS cands
UNWIND (CASE WHEN size(cands) = 0 THEN [null] ELSE cands END) AS p
OPTIONAL MATCH (p)-[:DEVELOPS]->(ds:Skill)
WITH a, skills, goals, current, programs, targets, p, collect(ds.id) AS develops
OPTIONAL MATCH (s:Athlete)-[:ENROLLED_IN]->(p) WHERE s.id <> a.id
OPTIONAL MATCH (s)-[:WANTS]->(k:Skill) WHERE k.id IN targets
WITH a, skills, goals, current, programs, p, develops, collect([s.id, k.id]) AS similar
RETURN a.sport AS sport, a.city AS city, a.level AS level, a.looking AS looking,
       skills, goals, current, programs,
       collect([p.id, p.sport, p.level, p.coach_id, develops, similar]) AS candidates
"""
)

_PATH = (
    _PROFILE
    + """
MATCH (target:Skill {id: $target})
OPTIONAL MATCH (up:Skill)-[:PREREQUISITE_OF*1..]->(target)
WITH a, skills, goals, current, programs, target, collect(DISTINCT up) + [target] AS above
UNWIND above AS s
OPTIONAL MATCH (pre:Skill)-[:PREREQUISITE_OF]->(s)
OPTIONAL MATCH (prog:Program)-[:DEVELOPS]->(s)
RETURN a.sport AS sport, a.city AS city, a.level AS level, a.looking AS looking,
       skills, goals, current, programs,
       collect(DISTINCT [pre.id, s.id]) AS prerequisites,
       collect(DISTINCT [prog.id, s.id]) AS developing
"""
)

_ROSTER = """
MATCH (c:Coach {id: $id})
OPTIONAL MATCH (c)-[t:TEACHES]->(ts:Skill)
WITH c, collect([ts.id, t.level]) AS teaches, collect(ts.id) AS taught
OPTIONAL MATCH (c)-[:COACHES]->(m:Athlete)
OPTIONAL MATCH (m)-[:WANTS]->(mg:Skill)
WITH c, teaches, taught, collect([m.id, mg.id]) AS roster_goals, collect(DISTINCT m.id) AS roster
OPTIONAL MATCH (x:Athlete)-[:WANTS]->(xs:Skill)
WHERE xs.id IN taught AND x.looking = true AND x.sport IN c.sports AND NOT x.id IN roster
WITH c, teaches, taught, roster_goals, x, count(xs) AS hits
ORDER BY hits DESC, x.id
WITH c, teaches, taught, roster_goals, collect(x)[0..$limit] AS cands
UNWIND (CASE WHEN size(cands) = 0 THEN [null] ELSE cands END) AS x
OPTIONAL MATCH (x)-[:WANTS]->(g:Skill)
WITH c, teaches, taught, roster_goals, x, collect(g.id) AS goals
OPTIONAL MATCH (x)-[h:HAS_SKILL]->(hs:Skill) WHERE hs.id IN taught
WITH c, teaches, roster_goals, x, goals, collect([hs.id, h.level]) AS levels
RETURN c.sports AS sports, c.city AS city, c.capacity AS capacity, c.active AS active,
       teaches, roster_goals,
       collect([x.id, x.sport, x.city, x.level, x.looking, goals, levels]) AS candidates
"""

_GOAL_FIT = """
MATCH (a:Athlete {id: $id})
OPTIONAL MATCH (a)-[:WANTS]->(g:Skill)
WITH collect(g.id) AS goals
OPTIONAL MATCH (c:Coach)-[:TEACHES]->(t:Skill) WHERE c.id IN $coaches AND t.id IN goals
WITH goals, collect([c.id, t.id]) AS taught
OPTIONAL MATCH (p:Program)-[:DEVELOPS]->(d:Skill) WHERE p.id IN $programs AND d.id IN goals
RETURN goals, taught, collect([p.id, d.id]) AS developed
"""


def _pairs(values: list[Any]) -> list[tuple[int, int]]:
    """[[a, b], ...] from collect(), without the [null, null] an empty OPTIONAL MATCH leaves."""
    return [(v[0], v[1]) for v in values if v[0] is not None and v[1] is not None]


class Neo4jGraph:
    """The projection in a Bolt graph database."""

    name = "neo4j"
    persistent = True

    def __init__(
        self,
        uri: str,
        *,
        user: str | None,
        password: str | None,
        database: str | None,
        pool_size: int = 50,
        timeout: float = 30.0,
        driver: AsyncDriver | None = None,
        write_batch: int = 1000,
        query_timeout: float | None = 30.0,
    ) -> None:
        self.uri = uri
        self.database = database
        self._auth = (user or "neo4j", password or "")
        self._pool_size = pool_size
        self._timeout = timeout
        self._driver = driver
        self._owns_driver = driver is None
        self.write_batch = write_batch
        self.query_timeout = query_timeout  # client side: a wedged server is an unavailable one

    async def start(self) -> None:
        if self._driver is None:
            self._driver = AsyncGraphDatabase.driver(
                self.uri,
                auth=self._auth,
                max_connection_pool_size=self._pool_size,
                connection_timeout=self._timeout,
                connection_acquisition_timeout=self._timeout,
            )
        for label in LABELS:
            await self._ensure_index(label)

    async def _ensure_index(self, label: str) -> None:
        name = f"{label.lower()}_id"
        try:  # Neo4j 5: a uniqueness constraint, which also indexes
            await self._run(
                f"CREATE CONSTRAINT {name} IF NOT EXISTS FOR (n:{label}) REQUIRE n.id IS UNIQUE"
            )
        except Neo4jError:
            try:  # FalkorDB: a plain index (an existing one is an error to ignore)
                await self._run(f"CREATE INDEX FOR (n:{label}) ON (n.id)")
            except Neo4jError as err:
                log.debug("index on %s.id: %s", label, err)

    async def close(self) -> None:
        if self._driver is not None and self._owns_driver:
            await self._driver.close()
        self._driver = None

    async def _run(self, query: str, **params: Any) -> list[dict[str, Any]]:
        """One auto-commit statement, its result consumed; a server that is down, lost, or
        does not answer within the query timeout raises `Unavailable` (the store boundary)."""
        assert self._driver is not None, "start() first"
        try:
            return await asyncio.wait_for(self._statement(query, params), self.query_timeout)
        except _CONNECTION_ERRORS as err:
            log.warning("graph server unavailable: %s: %s", type(err).__name__, err)
            raise Unavailable(STORE) from err

    async def _statement(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        assert self._driver is not None, "start() first"
        with tracing.span("neo4j.query", **{"db.system": "neo4j", "db.statement": query}):
            async with self._driver.session(database=self.database) as session:
                result = await session.run(query, params)
                return await result.data()

    async def ping(self) -> None:
        """One trivial round trip: raises `Unavailable` when the server does not answer."""
        await self._run("RETURN 1 AS ok")

    async def mark(self, projection: str) -> None:
        await self._run("MERGE (m:Projection {name: $name})", name=projection)

    async def marked(self, projection: str) -> bool:
        try:
            rows = await self._run(
                "MATCH (m:Projection {name: $name}) RETURN count(m) AS n", name=projection
            )
        except Neo4jError:  # FalkorDB: no graph under this name (any more)
            return False
        return bool(rows and rows[0]["n"])

    async def _write(self, query: str, rows: list[dict[str, Any]]) -> None:
        """UNWIND writes in chunks: bounded messages (FalkorDB's Bolt overflows on large ones)."""
        for start in range(0, len(rows), self.write_batch):
            await self._run(query, rows=rows[start : start + self.write_batch])

    async def clear(self) -> None:
        await self._run("MATCH (n) DETACH DELETE n")

    # ------------------------------------------------------------------ writes
    async def apply(self, states: States) -> None:
        if states.coaches:
            rows = [
                {
                    "id": c.id,
                    "sports": list(c.sports),
                    "city": c.city,
                    "capacity": c.capacity,
                    "active": c.active,
                }
                for c in states.coaches
            ]
            await self._write(
                "UNWIND $rows AS r MERGE (c:Coach {id: r.id}) SET c.sports = r.sports, "
                "c.city = r.city, c.capacity = r.capacity, c.active = r.active",
                rows,
            )
            await self._replace(
                "MATCH (c:Coach)-[r:TEACHES]->() WHERE c.id IN $ids DELETE r",
                "UNWIND $rows AS r MATCH (c:Coach {id: r.a}) MERGE (s:Skill {id: r.b}) "
                "MERGE (c)-[t:TEACHES]->(s) SET t.level = r.level",
                [c.id for c in states.coaches],
                [{"a": c.id, "b": s, "level": lv} for c in states.coaches for s, lv in c.teaches],
            )
        if states.athletes:
            await self._athletes(states)
        if states.skills:
            await self._write(
                "UNWIND $rows AS r MERGE (s:Skill {id: r.id}) SET s.sport = r.sport",
                [{"id": s.id, "sport": s.sport} for s in states.skills],
            )
            await self._replace(
                "MATCH ()-[r:PREREQUISITE_OF]->(s:Skill) WHERE s.id IN $ids DELETE r",
                "UNWIND $rows AS r MATCH (s:Skill {id: r.b}) MERGE (p:Skill {id: r.a}) "
                "MERGE (p)-[:PREREQUISITE_OF]->(s)",
                [s.id for s in states.skills],
                [{"a": p, "b": s.id} for s in states.skills for p in s.prerequisites],
            )
        if states.programs:
            await self._programs(states)
        for kind, ids in states.missing.items():
            if ids:
                label = kind.title()
                await self._run(
                    f"MATCH (n:{label}) WHERE n.id IN $ids DETACH DELETE n", ids=list(ids)
                )

    async def _replace(
        self, delete: str, create: str, ids: list[int], rows: list[dict[str, Any]]
    ) -> None:
        for start in range(0, len(ids), self.write_batch):
            await self._run(delete, ids=ids[start : start + self.write_batch])
        await self._write(create, rows)

    async def _athletes(self, states: States) -> None:
        athletes = states.athletes
        ids = [a.id for a in athletes]
        await self._write(
            "UNWIND $rows AS r MERGE (a:Athlete {id: r.id}) SET a.sport = r.sport, "
            "a.city = r.city, a.level = r.level, a.looking = r.looking",
            [
                {
                    "id": a.id,
                    "sport": a.sport,
                    "city": a.city,
                    "level": a.level,
                    "looking": a.looking,
                }
                for a in athletes
            ],
        )
        await self._replace(
            "MATCH (a:Athlete)-[r:HAS_SKILL]->() WHERE a.id IN $ids DELETE r",
            "UNWIND $rows AS r MATCH (a:Athlete {id: r.a}) MERGE (s:Skill {id: r.b}) "
            "MERGE (a)-[h:HAS_SKILL]->(s) SET h.level = r.level",
            ids,
            [{"a": a.id, "b": s, "level": lv} for a in athletes for s, lv in a.skills],
        )
        await self._replace(
            "MATCH (a:Athlete)-[r:WANTS]->() WHERE a.id IN $ids DELETE r",
            "UNWIND $rows AS r MATCH (a:Athlete {id: r.a}) MERGE (s:Skill {id: r.b}) "
            "MERGE (a)-[:WANTS]->(s)",
            ids,
            [{"a": a.id, "b": g} for a in athletes for g in a.goals],
        )
        await self._replace(
            "MATCH (a:Athlete)-[r:ENROLLED_IN]->() WHERE a.id IN $ids DELETE r",
            "UNWIND $rows AS r MATCH (a:Athlete {id: r.a}) MERGE (p:Program {id: r.b}) "
            "MERGE (a)-[:ENROLLED_IN]->(p)",
            ids,
            [{"a": a.id, "b": p} for a in athletes for p in a.programs],
        )
        await self._replace(
            "MATCH ()-[r:COACHES]->(a:Athlete) WHERE a.id IN $ids DELETE r",
            "UNWIND $rows AS r MATCH (a:Athlete {id: r.b}) MERGE (c:Coach {id: r.a}) "
            "MERGE (c)-[:COACHES]->(a)",
            ids,
            [{"a": c, "b": a.id} for a in athletes for c in a.coaches],
        )

    async def _programs(self, states: States) -> None:
        programs = states.programs
        ids = [p.id for p in programs]
        await self._write(
            "UNWIND $rows AS r MERGE (p:Program {id: r.id}) SET p.sport = r.sport, "
            "p.level = r.level, p.coach_id = r.coach",
            [
                {"id": p.id, "sport": p.sport, "level": p.level, "coach": p.coach_id}
                for p in programs
            ],
        )
        await self._replace(
            "MATCH (p:Program)-[r:DEVELOPS]->() WHERE p.id IN $ids DELETE r",
            "UNWIND $rows AS r MATCH (p:Program {id: r.a}) MERGE (s:Skill {id: r.b}) "
            "MERGE (p)-[:DEVELOPS]->(s)",
            ids,
            [{"a": p.id, "b": s} for p in programs for s in p.skills],
        )
        await self._replace(
            "MATCH ()-[r:LEADS]->(p:Program) WHERE p.id IN $ids DELETE r",
            "UNWIND $rows AS r MATCH (p:Program {id: r.b}) MERGE (c:Coach {id: r.a}) "
            "MERGE (c)-[:LEADS]->(p)",
            ids,
            [{"a": p.coach_id, "b": p.id} for p in programs],
        )

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _profile(athlete_id: int, row: dict[str, Any]) -> AthleteProfile:
        return AthleteProfile(
            AthleteInfo(athlete_id, row["sport"], row["city"], row["level"], row["looking"]),
            skills=dict(_pairs(row["skills"])),
            goals=tuple(sorted(g for g in row["goals"] if g is not None)),
            coaches=tuple(sorted(c for c in row["current"] if c is not None)),
            programs=tuple(sorted(p for p in row["programs"] if p is not None)),
        )

    async def coach_neighbourhood(
        self, athlete_id: int, *, limit: int, include: Sequence[int] = ()
    ) -> CoachNeighbourhood | None:
        rows = await self._run(
            _COACHES,
            id=athlete_id,
            limit=limit,
            city_prescore=CITY_PRESCORE,
            include=sorted(set(include)),
        )
        if not rows:
            return None
        profile = self._profile(athlete_id, rows[0])
        interesting = set(profile.goals) | set(profile.skills)
        candidates = [
            CoachCandidate(
                CoachInfo(cid, tuple(sports), city, capacity, active),
                teaches={s: lv for s, lv in _pairs(taught) if s in interesting},
                similar=tuple(sorted(set(_pairs(similar)))),
            )
            for cid, sports, city, capacity, active, taught, similar in rows[0]["candidates"]
            if cid is not None
        ]
        candidates.sort(key=lambda c: c.info.id)
        return CoachNeighbourhood(profile, tuple(candidates))

    async def roster_neighbourhood(
        self, coach_id: int, *, limit: int
    ) -> RosterNeighbourhood | None:
        rows = await self._run(_ROSTER, id=coach_id, limit=limit)
        if not rows:
            return None
        row = rows[0]
        coach = CoachInfo(
            coach_id, tuple(row["sports"]), row["city"], row["capacity"], row["active"]
        )
        teaches = dict(_pairs(row["teaches"]))
        candidates = [
            AthleteCandidate(
                AthleteInfo(aid, sport, city, level, looking),
                wants=tuple(sorted(g for g in goals if g in teaches)),
                goal_count=len([g for g in goals if g is not None]),
                skills=dict(_pairs(levels)),
            )
            for aid, sport, city, level, looking, goals, levels in row["candidates"]
            if aid is not None
        ]
        candidates.sort(key=lambda c: c.info.id)
        return RosterNeighbourhood(
            coach, teaches, tuple(sorted(set(_pairs(row["roster_goals"])))), tuple(candidates)
        )

    async def program_neighbourhood(
        self, athlete_id: int, *, limit: int
    ) -> ProgramNeighbourhood | None:
        rows = await self._run(_PROGRAMS, id=athlete_id, limit=limit)
        if not rows:
            return None
        profile = self._profile(athlete_id, rows[0])
        candidates = [
            ProgramCandidate(
                ProgramInfo(pid, sport, level, coach),
                develops=tuple(sorted(d for d in develops if d is not None)),
                enrolled_similar=tuple(sorted(set(_pairs(similar)))),
            )
            for pid, sport, level, coach, develops, similar in rows[0]["candidates"]
            if pid is not None
        ]
        candidates.sort(key=lambda c: c.info.id)
        return ProgramNeighbourhood(profile, tuple(candidates))

    async def path_neighbourhood(self, athlete_id: int, target_id: int) -> PathNeighbourhood | None:
        rows = await self._run(_PATH, id=athlete_id, target=target_id)
        if not rows:
            return None
        row = rows[0]
        return PathNeighbourhood(
            self._profile(athlete_id, row),
            target_id,
            tuple(sorted(set(_pairs(row["prerequisites"])))),
            tuple(sorted(set(_pairs(row["developing"])))),
        )

    async def goal_fit(
        self, athlete_id: int, *, coach_ids: list[int], program_ids: list[int]
    ) -> GoalFit:
        rows = await self._run(_GOAL_FIT, id=athlete_id, coaches=coach_ids, programs=program_ids)
        if not rows:
            return GoalFit((), {}, {})
        row = rows[0]

        def grouped(pairs: list[tuple[int, int]]) -> dict[int, tuple[int, ...]]:
            found: dict[int, set[int]] = {}
            for owner, goal in pairs:
                found.setdefault(owner, set()).add(goal)
            return {owner: tuple(sorted(goals)) for owner, goals in found.items()}

        return GoalFit(
            tuple(sorted(g for g in row["goals"] if g is not None)),
            grouped(_pairs(row["taught"])),
            grouped(_pairs(row["developed"])),
        )

    async def snapshot(self) -> Snapshot:
        snap = Snapshot()
        for r in await self._run(
            "MATCH (c:Coach) WHERE c.sports IS NOT NULL "
            "RETURN c.id AS id, c.sports AS sports, c.city AS city, c.capacity AS capacity, c.active AS active"
        ):
            snap.nodes.add(
                ("Coach", r["id"], tuple(r["sports"]), r["city"], r["capacity"], r["active"])
            )
        for r in await self._run(
            "MATCH (a:Athlete) WHERE a.sport IS NOT NULL RETURN a.id AS id, a.sport AS sport, "
            "a.city AS city, a.level AS level, a.looking AS looking"
        ):
            snap.nodes.add(("Athlete", r["id"], r["sport"], r["city"], r["level"], r["looking"]))
        for r in await self._run(
            "MATCH (s:Skill) WHERE s.sport IS NOT NULL RETURN s.id AS id, s.sport AS sport"
        ):
            snap.nodes.add(("Skill", r["id"], r["sport"]))
        for r in await self._run(
            "MATCH (p:Program) WHERE p.sport IS NOT NULL "
            "RETURN p.id AS id, p.sport AS sport, p.level AS level, p.coach_id AS coach"
        ):
            snap.nodes.add(("Program", r["id"], r["sport"], r["level"], r["coach"]))
        for r in await self._run(
            "MATCH (u)-[e]->(v) RETURN type(e) AS rel, u.id AS u, v.id AS v, e.level AS level"
        ):
            snap.edges.add((r["rel"], r["u"], r["v"], r["level"]))
        return snap
