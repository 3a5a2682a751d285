"""The seed generator, bulk load, the schema artifact, settings and the CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from coachgraph import seed
from coachgraph.api.auth import viewer_from_token
from coachgraph.config import Limits, Settings, SettingsError
from coachgraph.errors import InvalidInput
from coachgraph.ids import decode_id, from_global_id, to_global_id
from coachgraph.resolvers.policy import Role
from coachgraph.schema.schema import build_schema
from coachgraph.services import seed_database
from tests.conftest import SECRET, GraphQLClient, token_for
from tests.factories import Factory

ROOT = Path(__file__).resolve().parent.parent


def test_schema_artifact_matches_the_served_schema() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert build_schema().as_str().strip() == committed.strip(), (
        "schema.graphql is stale: run `coachgraph schema > schema.graphql` and review the diff"
    )


def test_generate_is_deterministic_and_plausible() -> None:
    one = seed.generate(coaches=30, athletes=400, seed=3)
    two = seed.generate(coaches=30, athletes=400, seed=3)
    other = seed.generate(coaches=30, athletes=400, seed=4)
    assert one == two and one != other
    capacity = {row[0]: row[7] for row in one.coaches}
    per_coach: dict[int, int] = {}
    for coach_id, _ in one.assignments:
        per_coach[coach_id] = per_coach.get(coach_id, 0) + 1
    assert all(n <= capacity[c] for c, n in per_coach.items())
    sport = {row[0]: row[2] for row in one.athletes}
    sports = {row[0]: row[4] for row in one.coaches}
    assert all(sport[a] in sports[c] for c, a in one.assignments)
    assert len(one.skills) == len(seed.SPORTS) * len(seed.TOPICS)
    assert one.assignments and one.sessions and one.enrollments and one.athlete_goals


async def test_seed_loads_consistent_rows(gql: GraphQLClient, factory: Factory) -> None:
    await factory.coach()  # the seed appends after existing rows
    sizes = await seed_database(
        factory.db, coaches=20, athletes=200, seed_value=1, show_progress=False
    )
    assert await factory.count("coaches") == 21
    assert await factory.count("athletes") == sizes["athletes"] == 200
    mismatched = await factory.db.pool.fetchval(
        "SELECT count(*) FROM coaches c WHERE active_athlete_count <> "
        "(SELECT count(*) FROM coach_athletes ca WHERE ca.coach_id = c.id)"
    )
    assert mismatched == 0
    events = await factory.db.pool.fetch("SELECT event FROM outbox ORDER BY id")
    assert events[-1]["event"] == "bulk.loaded"
    # new rows get fresh ids after the seeded ones
    made = await factory.coach()
    assert made.id == 22
    body = await gql("{ coaches(first: 5) { totalCount } }")
    assert body["data"]["coaches"]["totalCount"] == 22


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {"COACHGRAPH_DATA_DIR": "/tmp/x", "COACHGRAPH_LIMIT_MAX_PAGE_SIZE": "50"}
    )
    assert settings.limits.max_page_size == 50 and settings.database_url is None
    meili = Settings.from_env({"MEILI_URL": "http://127.0.0.1:7700", "MEILI_INDEX": "cg"})
    assert (meili.meili_url, meili.meili_index) == ("http://127.0.0.1:7700", "cg")
    for bad in (
        {"COACHGRAPH_LIMIT_MAX_DEPTH": "deep"},
        {"DATABASE_URL": "mysql://x"},
        {"COACHGRAPH_JWT_SECRET": "short"},
        {"COACHGRAPH_DB_POOL_MIN": "5", "COACHGRAPH_DB_POOL_MAX": "2"},
        {"COACHGRAPH_LIMIT_PERSONAL_RANK_WEIGHT_PERCENT": "150"},
        {"MEILI_URL": "localhost:7700"},
    ):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)


def test_every_limit_is_read_from_the_environment() -> None:
    """Each Limits field is COACHGRAPH_LIMIT_<NAME>: set every one to its own value, read back."""
    names = [f.name for f in fields(Limits)]
    wanted = {name: i + 2 for i, name in enumerate(names)}  # distinct, small enough to be valid
    env = {f"COACHGRAPH_LIMIT_{name.upper()}": str(value) for name, value in wanted.items()}
    limits = Settings.from_env(env).limits
    assert {name: getattr(limits, name) for name in names} == wanted
    assert Settings.from_env({}).limits == Limits()  # unset: the defaults


def test_published_placeholder_secrets_are_refused() -> None:
    """The compose file once fell back to this secret; anyone could sign an admin token."""
    for known in ("change-me-to-a-long-random-secret", "CHANGEME" * 5, "x" * 40):
        with pytest.raises(SettingsError, match="placeholder"):
            Settings.from_env({"COACHGRAPH_JWT_SECRET": known})
    compose = (Path(__file__).parent.parent / "docker-compose.yml").read_text()
    assert "COACHGRAPH_JWT_SECRET:?" in compose  # compose refuses to start without one


def test_global_ids() -> None:
    gid = to_global_id("Coach", 42)
    assert from_global_id(gid) == ("Coach", 42) and decode_id(gid, "Coach") == 42
    for bad in ("", "x" * 65, "Q29hY2g6", to_global_id("Coach", 0), "Q29hY2g6LTE", "!!!!"):
        with pytest.raises(InvalidInput):
            from_global_id(bad)
    with pytest.raises(InvalidInput):
        decode_id(gid, "Athlete")


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coachgraph.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_token_and_schema(tmp_path: Path) -> None:
    env = {"COACHGRAPH_JWT_SECRET": SECRET, "COACHGRAPH_DATA_DIR": str(tmp_path), "PATH": ""}
    coach = to_global_id("Coach", 7)
    done = run_cli("token", "--role", "coach", "--subject", coach, "--ttl", "60", env=env)
    assert done.returncode == 0, done.stderr
    viewer = viewer_from_token(SECRET, done.stdout.strip())
    assert viewer.role is Role.COACH and viewer.coach_id == 7
    refused = run_cli("token", "--role", "athlete", "--subject", coach, env=env)
    assert refused.returncode == 2 and "Athlete" in refused.stderr
    schema = run_cli("schema", env=env)
    assert schema.returncode == 0 and "type Query" in schema.stdout


def test_cli_token_without_a_secret_explains(tmp_path: Path) -> None:
    done = run_cli("token", "--role", "admin", env={"COACHGRAPH_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2 and "COACHGRAPH_JWT_SECRET" in done.stderr


def test_tokens_are_checked_against_role() -> None:
    assert viewer_from_token(SECRET, token_for("admin")).is_admin
