"""Broker topic names, shared by whoever publishes and whoever subscribes."""

from __future__ import annotations

GRAPH_TOPIC = "graph:changed"  # the projector's batches: which records changed


def metrics_topic(session_id: int) -> str:
    return f"session:{session_id}:metrics"


def status_topic(session_id: int) -> str:
    return f"session:{session_id}:status"
