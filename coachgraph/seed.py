"""Deterministic synthetic data: sports with skill trees, coaches, athletes, assignments.

Assignments come from a plausible process (sport, goals, city, capacity, noise), written
independently of any recommendation code so that match quality can be measured against them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from coachgraph.stores.bulk import Bases, Dataset

SPORTS = (
    "running",
    "swimming",
    "cycling",
    "triathlon",
    "tennis",
    "climbing",
    "rowing",
    "football",
    "basketball",
    "yoga",
)
SPORT_WEIGHTS = (22, 14, 14, 8, 10, 8, 5, 9, 6, 4)
TOPICS = (
    "Fundamentals", "Posture", "Breathing", "Mobility", "Balance",
    "Technique", "Cadence", "Endurance", "Coordination", "Core Strength",
    "Tempo", "Intervals", "Pacing", "Agility", "Power",
    "Threshold", "Speed", "Hill Work", "Recovery", "Nutrition",
    "Race Tactics", "VO2max", "Mental Game", "Periodization", "Form Drills",
    "Taper", "Injury Prevention", "Advanced Technique", "Competition Prep", "Elite Conditioning",
)  # fmt: skip
TIER_SIZE = 5
CITIES = (
    "Paris", "Lyon", "Berlin", "Munich", "Madrid", "Barcelona", "Lisbon", "Porto", "Rome",
    "Milan", "Amsterdam", "Rotterdam", "Brussels", "Vienna", "Zurich", "Geneva", "Prague",
    "Warsaw", "Krakow", "Copenhagen", "Stockholm", "Oslo", "Helsinki", "Dublin", "London",
    "Manchester", "Edinburgh", "Boston", "New York", "Chicago", "Denver", "Austin", "Seattle",
    "San Diego", "Toronto", "Montreal", "Vancouver", "Sydney", "Melbourne", "São Paulo",
)  # fmt: skip
TIMEZONES = ("Europe/Paris", "Europe/Berlin", "Europe/London", "America/New_York", "UTC")
FIRST = (
    "John", "José", "Anna", "Léa", "Marco", "Sofia", "Lukas", "Emma", "Noah", "Mia", "Liam",
    "Zoé", "Hugo", "Nina", "Oscar", "Chloé", "Mateo", "Ines", "Felix", "Sara", "Jonas", "Elena",
    "Théo", "Ava", "Leon", "Clara", "Adam", "Maya", "Omar", "Ida", "Björn", "Aiko", "Ravi", "Lina",
)  # fmt: skip
LAST = (
    "Smith", "García", "Müller", "Rossi", "Dubois", "Silva", "Kowalski", "Jensen", "Novak",
    "Martin", "Bernard", "Schmidt", "Fernández", "Costa", "Lefèvre", "Andersson", "Nielsen",
    "Moreau", "Ricci", "Weber", "Hansen", "Laurent", "Romano", "Dupont", "Santos", "Fischer",
    "Kim", "Tanaka", "Okafor", "Patel", "O'Brien", "Novák", "Horvat", "Ivanova",
)  # fmt: skip

FRESH = Bases()  # an empty database: ids start at 1


@dataclass
class _SkillTree:
    ids: list[int]  # by topic index
    tier: dict[int, int]
    prereqs: dict[int, list[int]]


def generate(
    *,
    coaches: int,
    athletes: int,
    seed: int,
    bases: Bases = FRESH,
    progress: Callable[[int], None] = lambda _: None,
    now: datetime | None = None,
) -> Dataset:
    """Build the whole dataset in memory; same arguments, same rows."""
    rng = random.Random(seed)
    now = now or datetime(2026, 11, 1, tzinfo=UTC)
    data = Dataset()
    trees = _skills(data, rng, bases.skill, seed)
    coach_ids_by_sport, taught = _coaches(data, rng, coaches, bases, trees, now)
    progress(coaches)
    programs_by_sport = _programs(data, rng, bases, trees, taught, now)
    _athletes(data, rng, athletes, bases, trees, now, progress)
    _assign(data, rng, bases, coach_ids_by_sport, taught, now)
    _enroll(data, rng, bases, programs_by_sport)
    return data


def _skills(data: Dataset, rng: random.Random, base: int, seed: int) -> dict[str, _SkillTree]:
    trees = {}
    next_id = base
    # slugs must not collide with an earlier seed's skills
    suffix = "" if base == 0 else f"-s{seed}-{base}"
    for sport in SPORTS:
        ids, tier, prereqs = [], {}, {}
        for index, topic in enumerate(TOPICS):
            next_id += 1
            slug = f"{sport}-{topic.lower().replace(' ', '-')}{suffix}"
            data.skills.append((next_id, slug, f"{sport.title()}: {topic}", sport))
            ids.append(next_id)
            tier[next_id] = index // TIER_SIZE
            if index >= TIER_SIZE:
                lower = ids[(index // TIER_SIZE - 1) * TIER_SIZE : (index // TIER_SIZE) * TIER_SIZE]
                chosen = rng.sample(lower, rng.choice((1, 1, 2)))
                prereqs[next_id] = chosen
                data.prerequisites.extend((next_id, p) for p in chosen)
        trees[sport] = _SkillTree(ids, tier, prereqs)
    return trees


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _coaches(
    data: Dataset,
    rng: random.Random,
    count: int,
    bases: Bases,
    trees: dict[str, _SkillTree],
    now: datetime,
) -> tuple[dict[str, list[int]], dict[int, dict[int, int]]]:
    by_sport: dict[str, list[int]] = {s: [] for s in SPORTS}
    taught: dict[int, dict[int, int]] = {}
    for n in range(count):
        cid = bases.coach + n + 1
        sports = rng.choices(SPORTS, SPORT_WEIGHTS, k=1)
        if rng.random() < 0.2:
            other = rng.choices(SPORTS, SPORT_WEIGHTS, k=1)[0]
            if other not in sports:
                sports.append(other)
        skills: dict[int, int] = {}
        for sport in sports:
            tree = trees[sport]
            # a coach specialises: strong in a band of tiers, weaker outside it
            focus = rng.randint(0, 5)
            for sid in rng.sample(tree.ids, rng.randint(6, 14)):
                distance = abs(tree.tier[sid] - focus)
                skills[sid] = max(1, min(5, 5 - distance + rng.choice((-1, 0, 0, 1))))
        taught[cid] = skills
        data.coach_skills.extend((cid, sid, lv) for sid, lv in skills.items())
        city = rng.choice(CITIES)
        main = sports[0]
        data.coaches.append(
            (
                cid,
                _name(rng),
                f"{main.title()} coach in {city}",
                f"Certified {main} coach. {rng.randint(2, 25)} years of experience.",
                sports,
                city,
                rng.choice(TIMEZONES),
                rng.randint(5, 40),
                now - timedelta(days=rng.randint(30, 2000)),
            )
        )
        for sport in sports:
            by_sport[sport].append(cid)
    return by_sport, taught


def _programs(
    data: Dataset,
    rng: random.Random,
    bases: Bases,
    trees: dict[str, _SkillTree],
    taught: dict[int, dict[int, int]],
    now: datetime,
) -> dict[str, list[int]]:
    by_sport: dict[str, list[int]] = {s: [] for s in SPORTS}
    sport_of = {sid: sport for sport, tree in trees.items() for sid in tree.ids}
    tier_of = {sid: t for tree in trees.values() for sid, t in tree.tier.items()}
    pid = bases.program
    for coach_row in data.coaches:
        cid = coach_row[0]
        skills = sorted(taught[cid])
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            chosen = rng.sample(skills, min(len(skills), rng.randint(2, 5)))
            sport = sport_of[chosen[0]]
            chosen = [s for s in chosen if sport_of[s] == sport]
            level = max(1, min(5, max(tier_of[s] for s in chosen)))
            pid += 1
            title = f"{sport.title()} {rng.choice(('Foundations', 'Build', 'Peak', 'Mastery'))}"
            data.programs.append(
                (
                    pid,
                    cid,
                    f"{title} #{pid}",
                    f"A {rng.randint(4, 16)}-week {sport} block.",
                    sport,
                    level,
                    rng.randint(4, 16),
                    now - timedelta(days=rng.randint(1, 700)),
                )
            )
            data.program_skills.extend((pid, s) for s in chosen)
            by_sport[sport].append(pid)
    return by_sport


def _athletes(
    data: Dataset,
    rng: random.Random,
    count: int,
    bases: Bases,
    trees: dict[str, _SkillTree],
    now: datetime,
    progress: Callable[[int], None],
) -> None:
    for n in range(count):
        aid = bases.athlete + n + 1
        sport = rng.choices(SPORTS, SPORT_WEIGHTS, k=1)[0]
        tree = trees[sport]
        level = rng.choices((1, 2, 3, 4, 5), (25, 30, 25, 13, 7), k=1)[0]
        known = set()
        for sid in tree.ids:
            if tree.tier[sid] < level and rng.random() < 0.8:
                known.add(sid)
                data.athlete_skills.append((aid, sid, max(1, min(5, level - tree.tier[sid]))))
        frontier = [
            sid
            for sid in tree.ids
            if sid not in known and tree.tier[sid] <= level + 1 and tree.tier[sid] >= level - 1
        ]
        for sid in rng.sample(frontier, min(len(frontier), rng.randint(1, 3))):
            data.athlete_goals.append((aid, sid))
        data.athletes.append(
            (
                aid,
                _name(rng),
                sport,
                rng.choice(CITIES),
                rng.choice(TIMEZONES),
                level,
                rng.random() < 0.3,
                now - timedelta(days=rng.randint(1, 1500)),
            )
        )
        if (n + 1) % 5000 == 0:
            progress(5000)
    progress(count % 5000)


def _assign(
    data: Dataset,
    rng: random.Random,
    bases: Bases,
    coach_ids_by_sport: dict[str, list[int]],
    taught: dict[int, dict[int, int]],
    now: datetime,
) -> None:
    capacity = {r[0]: r[7] for r in data.coaches}
    city_of = {r[0]: r[5] for r in data.coaches}
    goals: dict[int, list[int]] = {}
    for aid, sid in data.athlete_goals:
        goals.setdefault(aid, []).append(sid)
    sid_next = bases.session
    for index, row in enumerate(data.athletes):
        aid, sport, city, looking = row[0], str(row[2]), row[3], bool(row[6])
        if looking or rng.random() > 0.65:
            continue
        pool = [
            c
            for c in rng.sample(coach_ids_by_sport[sport], min(25, len(coach_ids_by_sport[sport])))
            if capacity[c] > 0
        ]
        if not pool:
            continue

        def fit(cid: int, aid: int = aid, city: object = city) -> float:
            teaches = taught[cid]
            cover = sum(teaches.get(g, 0) for g in goals.get(aid, ()))
            return cover + (2.0 if city_of[cid] == city else 0.0) + rng.gauss(0, 1.5)

        best = max(pool, key=fit)
        capacity[best] -= 1
        data.assignments.append((best, aid))
        for k in range(rng.choice((0, 1, 1, 2, 3))):
            sid_next += 1
            start = now - timedelta(days=rng.randint(1, 300), hours=index % 12 + k)
            data.sessions.append(
                (
                    sid_next,
                    best,
                    aid,
                    "COMPLETED",
                    start,
                    start,
                    start + timedelta(minutes=rng.choice((45, 60, 90))),
                )
            )


def _enroll(
    data: Dataset, rng: random.Random, bases: Bases, programs_by_sport: dict[str, list[int]]
) -> None:
    for row in data.athletes:
        options = programs_by_sport[str(row[2])]
        if options and rng.random() < 0.3:
            data.enrollments.append((row[0], rng.choice(options)))
