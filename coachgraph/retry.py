"""Capped exponential backoff for background work that outlives a store outage."""

from __future__ import annotations

from coachgraph.config import Limits


class Backoff:
    """Delays that double from `initial` up to `maximum` seconds; `reset()` after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = max(initial, maximum)
        self._next = initial
        self.failures = 0  # since the last success

    @classmethod
    def from_limits(cls, limits: Limits) -> Backoff:
        return cls(limits.store_retry_initial_ms / 1000, limits.store_retry_max_ms / 1000)

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed (a delay has been handed out since the last reset)."""
        return self.failures > 0

    def next(self) -> float:
        """The delay before the next attempt; the one after is twice as long, up to the cap."""
        self.failures += 1
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial
        self.failures = 0
