"""What one request did, tallied where it happens and read where it is reported: its id (for
logs and the X-Request-Id header), the SQL statements it sent and the loader batches it made.
Context variables carry them, so the stores and loaders below count without knowing who asks
(api/metrics.py reports them per operation); nothing here is shared across requests."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(slots=True)
class Tally:
    """Counted during one GraphQL operation."""

    statements: int = 0
    batches: list[int] = field(default_factory=list)  # the size of each loader batch


_tally: ContextVar[Tally | None] = ContextVar("coachgraph_tally", default=None)
request_id: ContextVar[str | None] = ContextVar("coachgraph_request_id", default=None)


@contextmanager
def tallying() -> Iterator[Tally]:
    """Count what runs inside (and in tasks started inside) into a fresh Tally."""
    tally = Tally()
    token = _tally.set(tally)
    try:
        yield tally
    finally:
        # a subscription's stream may be closed from another context than the one that
        # opened it: there is nothing of ours to restore in that one
        with contextlib.suppress(ValueError):
            _tally.reset(token)


def count_statement(record: Any) -> None:
    """An asyncpg query logger: run soon after each statement, in the context that sent it."""
    tally = _tally.get()
    if tally is not None:
        tally.statements += 1


def count_batch(size: int) -> None:
    """A DataLoader dispatched a batch of `size` keys."""
    tally = _tally.get()
    if tally is not None:
        tally.batches.append(size)


_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def sane_request_id(value: str | None) -> str | None:
    """An incoming X-Request-Id worth keeping: up to 128 plain characters (no spaces, quotes
    or control characters that would forge or break a log line), else None."""
    if value is not None and _SANE_ID.fullmatch(value):
        return value
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id when there is
    one, and the exception's traceback as text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class QuietDisconnects(logging.Filter):
    """Drops records about a client or store going away as it ordinarily does: a WebSocket
    closed under a running operation (strawberry's "Exception in worker task"), a refused or
    reset connection while shutting down. Anything else passes."""

    def __init__(self, *quiet: type[BaseException]) -> None:
        super().__init__()
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        while error is not None:
            if isinstance(error, self.quiet):
                return False
            error = error.__cause__ or error.__context__
        return True
