"""A search's count and facets, started beside its page, are stopped when the page fails:
cancelled and waited for, so no query outlives the request holding a pooled connection."""

from __future__ import annotations

import asyncio
from typing import Any

from coachgraph.resolvers.search import Totals
from coachgraph.search.model import FacetCounts


class _Stalled:
    """A search backend whose count and facets never answer; it notes when each has let go
    of its (pretend) connection."""

    def __init__(self) -> None:
        self.started = 0
        self.both_started = asyncio.Event()
        self.released: list[str] = []

    async def _hold(self, what: str) -> None:
        self.started += 1
        if self.started == 2:
            self.both_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # releasing a connection takes a round trip
            self.released.append(what)

    async def count(self, prepared: Any) -> int:
        await self._hold("count")
        return 0

    async def facets(self, prepared: Any) -> FacetCounts:
        await self._hold("facets")
        return FacetCounts({}, exact=True)


async def test_cancelled_totals_are_waited_for() -> None:
    backend = _Stalled()
    totals = Totals(backend, prepared=object())  # type: ignore[arg-type]
    count, facets = totals.count(), totals.facets()
    await backend.both_started.wait()
    await totals.cancel()
    assert count.cancelled() and facets.cancelled()
    assert sorted(backend.released) == ["count", "facets"]
