"""What the search backends exchange with the rest of the app: the protocol and its values.

A backend is a projection sink (the projector hands it the records an outbox batch touched;
`rebuild` makes it again from every record) and answers one query in three parts, each run
only when the client asks for it: the hits of a page, the total count, the facets.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

from coachgraph.stores.outbox import Dirty
from coachgraph.stores.records import AthleteScope

SEARCH_KINDS = ("COACH", "ATHLETE", "PROGRAM", "SKILL")
FACET_FIELDS = ("sport", "city", "level")

Facets = dict[str, list[tuple[str, int]]]  # field → (value, count), most frequent first


WORD = re.compile(r"[^\W_]+")  # letters and digits: all a query word may hold


def words(text: str, limit: int) -> list[str]:
    """The query's distinct words (ignoring case), in order, at most `limit`; no punctuation
    or query syntax survives."""
    return list(dict.fromkeys(w.lower() for w in WORD.findall(text)))[:limit]


def fold(text: str) -> str:
    """Lower case without accents ("José" → "jose"), as `cg_fold` does in SQL."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@dataclass(frozen=True, slots=True)
class Scope:
    """Which documents a viewer may find: kinds, and of athletes, those `athletes` holds
    (decided by resolvers/policy.py; each backend renders it)."""

    kinds: list[str]
    athletes: AthleteScope = field(default_factory=AthleteScope)


@dataclass(frozen=True, slots=True)
class Filters:
    sports: list[str] | None = None  # lower case
    cities: list[str] | None = None  # matched without case or accents
    min_level: int | None = None
    max_level: int | None = None
    skill_ids: list[int] | None = None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A validated search: the viewer's text (length-checked), scope and filters."""

    text: str
    scope: Scope
    filters: Filters
    max_words: int

    @property
    def browse(self) -> bool:
        """A blank text: every document in scope passing the filters, by title then id."""
        return not self.text.strip()


@dataclass(frozen=True, slots=True)
class Hit:
    kind: str
    id: int
    score: float | None  # text relevance, larger is better (within one list); None: browsing
    highlight: str | None


@dataclass(frozen=True, slots=True)
class FacetCounts:
    """Facet counts, and whether they counted every match (a backend may stop at a limit)."""

    values: Facets
    exact: bool


class Prepared:
    """A query a backend has made ready (its corrections, its filter); opaque to callers."""


class SearchIndex(Protocol):
    """A search projection: kept by the projector, queried by the `search` field."""

    name: str
    # holds, at start, what was projected before (then it catches up from its own offset,
    # stored under offset_name, rather than being rebuilt)
    persistent: bool
    offset_name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise unless the backend answers."""

    async def apply(self, dirty: Dirty) -> None:
        """Make the documents of these records equal the records (idempotent)."""

    async def rebuild(self) -> int:
        """Every document again from the records, searchable throughout; returns how many."""

    async def prepare(self, query: SearchQuery) -> Prepared | None:
        """None when the text has nothing to search for (only punctuation, say); a blank
        text browses (`SearchQuery.browse`)."""

    async def hits(self, prepared: Prepared, *, offset: int, limit: int) -> list[Hit]:
        """Best first, in an order that is stable from one page to the next; a browse by
        title (without case), then kind, then id."""

    async def count(self, prepared: Prepared) -> int: ...

    async def facets(self, prepared: Prepared) -> FacetCounts: ...
