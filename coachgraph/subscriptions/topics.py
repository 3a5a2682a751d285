"""Broker topic names, shared by whoever publishes and whoever subscribes, and the shape of
the messages that are more than "something happened"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coachgraph.subscriptions.broker import Message, is_resync

GRAPH_TOPIC = "graph:changed"  # the projector's batches: which records changed


def metrics_topic(session_id: int) -> str:
    """A session's samples ({"samples": [[cursor, kind, micros, value], ...]}, one message per
    stored batch) and, once it has ended, {"ended": status}; or the broker's RESYNC."""
    return f"session:{session_id}:metrics"


def status_topic(session_id: int) -> str:
    return f"session:{session_id}:status"


def ended_message(status: str) -> Message:
    """Published on the metrics topic after a session's move to an ended status commits."""
    return {"ended": status}


def is_ended(message: Message) -> bool:
    return "ended" in message


# ---------------------------------------------------------------- graph changes

EVERYTHING: Message = {"all": True}


def graph_changed(
    changed: Mapping[str, Iterable[int]], *, coached_by: Iterable[int], max_ids: int
) -> Message:
    """What one applied batch changed: the ids of each kind of record it rewrote
    (`{"changed": {"coach": [...], "athlete": [...], ...}}`) and the current coaches of the
    athletes among them (`"coached_by"`); more than `max_ids` ids in all is announced as
    EVERYTHING, which keeps every message small."""
    lists = {kind: sorted(ids) for kind, ids in changed.items() if ids}
    coaches = sorted(set(coached_by))
    if sum(map(len, lists.values())) + len(coaches) > max_ids:
        return EVERYTHING
    return {"changed": lists, "coached_by": coaches}


@dataclass(frozen=True, slots=True)
class GraphChange:
    """A GRAPH_TOPIC message, read: `everything` (a rebuild, a batch too big to list, a
    removed record, or events that may have been lost), else the ids it names."""

    everything: bool
    coaches: frozenset[int] = frozenset()
    athletes: frozenset[int] = frozenset()
    coached_by: frozenset[int] = frozenset()

    @classmethod
    def read(cls, message: Message) -> GraphChange:
        """The message's change. Every subscriber of a process is handed the same message
        object, so the last one read is remembered and read once for all of them."""
        global _last_read
        if _last_read is not None and _last_read[0] is message:
            return _last_read[1]
        change = cls._parse(message)
        _last_read = (message, change)
        return change

    @classmethod
    def _parse(cls, message: Message) -> GraphChange:
        changed = message.get("changed")
        coached_by = message.get("coached_by")
        if is_resync(message) or not isinstance(changed, dict) or not isinstance(coached_by, list):
            return cls(everything=True)  # RESYNC, EVERYTHING, or a shape this code does not know
        return cls(
            everything=False,
            coaches=frozenset(changed.get("coach", ())),
            athletes=frozenset(changed.get("athlete", ())),
            coached_by=frozenset(coached_by),
        )


_last_read: tuple[Message, GraphChange] | None = None
