"""StoreLoader.load_level: a batched field's parents at once, with DataLoader's caching."""

from __future__ import annotations

import asyncio
import gc

import pytest

from coachgraph.resolvers.loaders import StoreLoader


class Squares(StoreLoader[int, int]):
    """Squares its keys, recording each batch (no store: the mechanism is what is tested)."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__(conn=None)  # type: ignore[arg-type]
        self.batches: list[list[int]] = []
        self.fail = fail

    async def batch_load(self, keys: list[int]) -> list[int]:
        self.batches.append(list(keys))
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("the store failed")
        return [k * k for k in keys]


async def test_one_batch_for_the_keys_not_cached_in_key_order() -> None:
    loader = Squares()
    assert await loader.load(3) == 9
    assert await loader.load_level([2, 3, 2, 5]) == [4, 9, 4, 25]
    assert loader.batches == [[3], [2, 5]]  # 3 from the cache, 2 asked once
    assert await loader.load_level([5, 2]) == [25, 4]
    assert await loader.load(5) == 25
    assert loader.batches == [[3], [2, 5]]  # all cached since


async def test_a_load_meanwhile_joins_the_level_batch() -> None:
    loader = Squares()
    level = asyncio.ensure_future(loader.load_level([7, 8]))
    await asyncio.sleep(0)  # the level's batch is under way
    assert await loader.load(8) == 64
    assert await level == [49, 64]
    assert loader.batches == [[7, 8]]


async def test_a_pending_load_is_awaited_not_asked_again() -> None:
    loader = Squares()
    single = loader.load(4)  # queued in DataLoader's own batch, not dispatched yet
    assert await loader.load_level([4, 6]) == [16, 36]
    assert await single == 16
    assert sorted(loader.batches) == [[4], [6]]


async def test_a_failed_batch_fails_every_key_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loader = Squares(fail=True)
    with pytest.raises(RuntimeError, match="the store failed"):
        await loader.load_level([1, 2])
    with pytest.raises(RuntimeError):  # cached as DataLoader caches a failed load
        await loader.load(1)
    del loader
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
