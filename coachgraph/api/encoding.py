"""Encoding what the endpoint sends: JSON bytes with orjson, and protocol messages whose
event payload is encoded once for every subscriber it goes to."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import orjson
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected

from coachgraph.engine import remember


def encode(data: object) -> bytes:
    """JSON as UTF-8 bytes: orjson, several times faster than json.dumps on large results;
    json.dumps for what orjson refuses (integers beyond 64 bits in a JSON scalar)."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


# Event payloads encoded lately, by the identity of their data (kept alive with it): the
# engine hands every watcher of an event the same result object (Engine.event)
_ENCODED: OrderedDict[int, tuple[object, bytes]] = OrderedDict()
_ENCODED_SIZE = 1_024


def encode_message(message: Any) -> bytes:
    """A protocol message; a `next`/`data` payload of plain data encoded once for all the
    subscribers it goes to, then framed with each one's id."""
    payload = message.get("payload") if isinstance(message, dict) else None
    if not (isinstance(payload, dict) and len(payload) == 1 and "data" in payload):
        return encode(message)
    head = {k: v for k, v in message.items() if k != "payload"}
    if not head:
        return encode(message)
    data = payload["data"]
    found = _ENCODED.get(id(data))
    if found is None or found[0] is not data:
        found = (data, encode(payload))
        remember(_ENCODED, id(data), found, _ENCODED_SIZE)
    return encode(head)[:-1] + b',"payload":' + found[1] + b"}"


class WebSocketAdapter(ASGIWebSocketAdapter):
    """Strawberry's adapter; messages encoded by `encode_message`, sent as text frames as the
    protocols require."""

    async def send_json(self, message: Any) -> None:
        try:
            await self.ws.send_text(encode_message(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc
