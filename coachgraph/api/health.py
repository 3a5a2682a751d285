"""GET /healthz: every configured store checked on its own, each within a timeout.

200 `{"status": "ok", ...}` when all answer; 503 `{"status": "unavailable", "failed": [...]}`
naming each store that did not, so an operator (or a load balancer's log) sees which one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse

from coachgraph.runtime import Resources

log = logging.getLogger(__name__)


async def _check(name: str, probe: Callable[[], Awaitable[object]], seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await probe()
    except asyncio.CancelledError:
        raise
    except Exception as err:  # whatever the failure, the store did not answer
        log.warning("healthz: %s unavailable: %s: %s", name, type(err).__name__, err)
        return False
    return True


async def healthz(request: Request) -> JSONResponse:
    """200 once every configured backend answers; else 503 naming those that do not."""
    resources: Resources = request.state.resources
    timeout = resources.settings.limits.store_timeout_ms / 1000

    async def postgres() -> None:
        await resources.db.pool.fetchval("SELECT 1", timeout=timeout)

    probes: dict[str, Callable[[], Awaitable[object]]] = {
        "postgres": postgres,
        "graph": resources.graph.ping,
        "search": resources.search.ping,
        "broker": resources.broker.ping,
    }
    results = await asyncio.gather(
        *(_check(name, probe, timeout) for name, probe in probes.items())
    )
    status = dict(zip(probes, results, strict=True))
    failed = [name for name, ok in status.items() if not ok]
    report: dict[str, object] = {
        "status": "unavailable" if failed else "ok",
        "failed": failed,
        **{name: "ok" if ok else "unavailable" for name, ok in status.items()},
        "backends": {
            "graph": resources.graph.name,
            "search": resources.search.name,
            "broker": resources.broker.name,
        },
        # which process answered, of `serve --workers N` (pid: the same index is reused when a
        # dead worker is replaced)
        "worker": {"index": resources.settings.worker_index, "pid": os.getpid()},
    }
    if status["postgres"]:
        try:
            lag = await asyncio.wait_for(resources.projector.lag(), timeout)
            report["projection_lag"] = {
                "pending": lag.pending,
                "oldest_seconds": lag.oldest_seconds,
            }
        except Exception as err:  # informative only: health is the probes above
            log.warning("healthz: projection lag unknown: %s", err)
    return JSONResponse(report, 503 if failed else 200)
