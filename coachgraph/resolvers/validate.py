"""Input checks shared by resolvers; each failure is an InvalidInput naming its field."""

from __future__ import annotations

import functools
import unicodedata
import zoneinfo
from collections.abc import Sequence

from coachgraph.config import Limits
from coachgraph.errors import InvalidInput
from coachgraph.ids import MAX_POSITION, decode_cursor, decode_id

DEFAULT_FIRST = 20  # a page's size when `first` is null


def text(value: str, *, field: str, max_length: int) -> str:
    """Trimmed, non-empty, printable text of bounded length."""
    cleaned = value.strip()
    if not cleaned:
        raise InvalidInput(f"{field} must not be empty", field=field, code="REQUIRED")
    if len(cleaned) > max_length:
        raise InvalidInput(
            f"{field} must be at most {max_length} characters", field=field, code="TOO_LONG"
        )
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in cleaned):
        raise InvalidInput(f"{field} contains control characters", field=field, code="INVALID")
    return cleaned


def optional_text(value: str | None, *, field: str, max_length: int) -> str | None:
    """Like `text`, but None or blank means no value."""
    if value is None or not value.strip():
        return None
    return text(value, field=field, max_length=max_length)


def sport(value: str, *, field: str = "sport") -> str:
    """A sport name, normalised to lower case."""
    return text(value, field=field, max_length=50).lower()


def sports(values: list[str], limits: Limits, *, field: str = "sports") -> list[str]:
    if not 1 <= len(values) <= limits.max_sports:
        raise InvalidInput(
            f"{field} must list 1 to {limits.max_sports} sports", field=field, code="OUT_OF_RANGE"
        )
    return list(dict.fromkeys(sport(v, field=field) for v in values))


def in_range(value: int, *, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidInput(
            f"{field} must be between {low} and {high}", field=field, code="OUT_OF_RANGE"
        )
    return value


def level(value: int, *, field: str = "level") -> int:
    return in_range(value, field=field, low=1, high=5)


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone(value: str, *, field: str = "timezone") -> str:
    """An IANA time zone name such as Europe/Paris."""
    name = value.strip()
    if name not in _zones():
        raise InvalidInput("Unknown time zone", field=field, code="INVALID_TIMEZONE")
    return name


def page_args(
    first: int | None,
    after: str | None,
    limits: Limits,
    *,
    default: int = DEFAULT_FIRST,
    max_cursor: int = MAX_POSITION,
) -> tuple[int, int | None]:
    """Validated `first` (0..max page size; null means the default) and the decoded cursor
    (a position up to `max_cursor`)."""
    size = default if first is None else first
    in_range(size, field="first", low=0, high=limits.max_page_size)
    return size, decode_cursor(after, maximum=max_cursor) if after is not None else None


def ids(values: Sequence[str], expected: str, *, field: str, limit: int) -> list[int]:
    """Decode a bounded list of global IDs of one type, dropping repeats."""
    if len(values) > limit:
        raise InvalidInput(f"{field} may list at most {limit} IDs", field=field, code="TOO_MANY")
    return list(dict.fromkeys(decode_id(v, expected, field=field) for v in values))
