"""The server's garbage-collector tuning (Settings.gc_tuning, app.tune_gc)."""

from __future__ import annotations

import gc

from coachgraph.app import tune_gc
from coachgraph.config import Settings


def test_tune_gc_freezes_start_up_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(12_345)
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert gc.get_freeze_count() > 0  # what was alive is out of every collection
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_gc_tuning_is_on_by_default_and_can_be_turned_off() -> None:
    env = {"COACHGRAPH_JWT_SECRET": "a-secret-for-settings-tests-0123456789"}
    assert Settings.from_env(env).gc_tuning is True
    assert Settings.from_env({**env, "COACHGRAPH_GC_TUNING": "0"}).gc_tuning is False
    limits = Settings.from_env({**env, "COACHGRAPH_LIMIT_GC_YOUNG_THRESHOLD": "20000"}).limits
    assert limits.gc_young_threshold == 20_000
