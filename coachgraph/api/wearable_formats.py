"""Samples out of a wearable's file: FIT (decoded by fitdecode), TCX and GPX (read by the
standard library's expat through defusedxml: no DTD, no entities, nothing fetched).

Each point of a file gives its heart rate, power, cadence and speed, those it holds, in that
order, as (kind, time, value) samples; the times and values are the file's own, checked later
as every other sample is (coachgraph.resolvers.live.check_samples). A file that is not one of
the three, or is damaged, raises FileProblem naming the problem; nothing is stored then."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import fitdecode
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from coachgraph.errors import InvalidInput
from coachgraph.resolvers.live import RawSample

FIT, TCX, GPX = "FIT", "TCX", "GPX"

# declared media types (the bytes decide when none of these is given)
CONTENT_TYPES = {
    "application/vnd.ant.fit": FIT,
    "application/fit": FIT,
    "application/vnd.garmin.tcx+xml": TCX,
    "application/tcx+xml": TCX,
    "application/gpx+xml": GPX,
}


class FileProblem(InvalidInput):
    """The file is not a FIT, TCX or GPX file (UNSUPPORTED_FILE), is damaged (CORRUPT_FILE),
    holds no samples (EMPTY_FILE) or too many (TOO_MANY)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, field="file", code=code)


def detect(content_type: str | None, head: bytes) -> str:
    """The format a declared media type names, else the one the leading bytes show."""
    if not head:
        raise FileProblem("The file is empty", "EMPTY_FILE")
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared in CONTENT_TYPES:
        return CONTENT_TYPES[declared]
    if len(head) >= 12 and head[0] in (12, 14) and head[8:12] == b".FIT":
        return FIT
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        # the root element decides between TCX and GPX (or refuses) once parsed
        return "XML"
    shown = f" ({declared})" if declared else ""
    raise FileProblem(f"Not a FIT, TCX or GPX file{shown}", "UNSUPPORTED_FILE")


def extract(data: bytes, kind: str, *, max_samples: int) -> tuple[str, list[RawSample]]:
    """The file's format (FIT, TCX, GPX) and its samples, in file order; FileProblem when it
    is damaged, foreign, empty, or holds more than `max_samples`."""
    if not data:
        raise FileProblem("The file is empty", "EMPTY_FILE")
    found = _Found(max_samples)
    if kind == FIT:
        _fit(data, found)
    else:
        kind = _xml(data, kind, found)
    if not found.samples:
        raise FileProblem(
            f"The {kind} file holds no heart rate, power, cadence or speed", "EMPTY_FILE"
        )
    return kind, found.samples


class _Found:
    """Samples gathered so far, at most `cap` of them."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.samples: list[RawSample] = []

    def add(self, at: datetime, values: dict[str, float]) -> None:
        for metric in ORDER:
            if metric in values:
                if len(self.samples) >= self.cap:
                    raise FileProblem(f"The file holds more than {self.cap} samples", "TOO_MANY")
                self.samples.append((metric, at, values[metric]))


ORDER = ("HEART_RATE", "POWER", "CADENCE", "SPEED")

# FIT: a `record` message's fields (speed in m/s, scaled by fitdecode), the first present wins
_FIT_FIELDS = {
    "HEART_RATE": ("heart_rate",),
    "POWER": ("power",),
    "CADENCE": ("cadence",),
    "SPEED": ("enhanced_speed", "speed"),
}
_FIT_ERRORS = (
    fitdecode.FitError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    struct.error,
    UnicodeDecodeError,
    OverflowError,
)


def _fit(data: bytes, found: _Found) -> None:
    records = 0
    try:
        with fitdecode.FitReader(
            io.BytesIO(data),
            check_crc=fitdecode.CrcCheck.RAISE,
            error_handling=fitdecode.ErrorHandling.RAISE,
        ) as reader:
            for frame in reader:
                if frame.frame_type != fitdecode.FIT_FRAME_DATA or frame.name != "record":
                    continue
                records += 1
                at = frame.get_value("timestamp", fallback=None)
                values = _fit_values(frame)
                if not values:
                    continue
                if not isinstance(at, datetime):
                    raise FileProblem(f"FIT record {records} has no timestamp", "CORRUPT_FILE")
                found.add(at, values)
    except FileProblem:
        raise
    except fitdecode.FitHeaderError as err:
        raise FileProblem(f"Not a FIT file: {err}", "CORRUPT_FILE") from None
    except fitdecode.FitCRCError as err:
        raise FileProblem(f"Damaged FIT file (CRC mismatch): {err}", "CORRUPT_FILE") from None
    except fitdecode.FitEOFError as err:
        raise FileProblem(f"Truncated FIT file: {err}", "CORRUPT_FILE") from None
    except _FIT_ERRORS as err:
        raise FileProblem(f"Damaged FIT file: {err}", "CORRUPT_FILE") from None


def _fit_values(frame: Any) -> dict[str, float]:
    values: dict[str, float] = {}
    for metric, names in _FIT_FIELDS.items():
        for name in names:
            value = frame.get_value(name, fallback=None) if frame.has_field(name) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[metric] = float(value)
                break
    return values


# TCX and GPX: a point's elements (any depth, namespaces aside, case aside) that hold a metric
_XML_FIELDS = {
    "hr": "HEART_RATE",
    "heartrate": "HEART_RATE",
    "heartratebpm": "HEART_RATE",  # TCX: <HeartRateBpm><Value>142</Value></HeartRateBpm>
    "power": "POWER",
    "watts": "POWER",
    "powerinwatts": "POWER",
    "cad": "CADENCE",
    "cadence": "CADENCE",
    "runcadence": "CADENCE",
    "speed": "SPEED",
}
_ROOTS = {"trainingcenterdatabase": (TCX, "trackpoint"), "gpx": (GPX, "trkpt")}


def _local(tag: str) -> str:
    return tag.rpartition("}")[2].lower()


def _xml(data: bytes, declared: str, found: _Found) -> str:
    """Read the points of a TCX or GPX document as it parses (each dropped once read)."""
    kind = declared
    point_name = ""
    points = 0
    root: Element | None = None
    open_elements: list[Element] = []  # the element being read, and those around it
    try:
        for event, element in iterparse(io.BytesIO(data), events=("start", "end"), forbid_dtd=True):
            if event == "start":
                open_elements.append(element)
            else:
                open_elements.pop()
            if root is None:
                root = element
                known = _ROOTS.get(_local(element.tag))
                if known is None or declared not in ("XML", known[0]):
                    expected = "a TCX or GPX" if declared == "XML" else f"a {declared}"
                    raise FileProblem(
                        f"Not {expected} file: its root element is <{_local(element.tag)}>",
                        "UNSUPPORTED_FILE",
                    )
                kind, point_name = known
            elif event == "end" and _local(element.tag) == point_name:
                points += 1
                _point(element, points, kind, found)
                if open_elements:  # what was read is dropped: memory stays flat
                    open_elements[-1].remove(element)
    except FileProblem:
        raise
    except DefusedXmlException as err:
        raise FileProblem(
            f"The file declares a DTD or entities, which are refused: {err}", "CORRUPT_FILE"
        ) from None
    except ParseError as err:
        raise FileProblem(f"Damaged {kind} file: {err}", "CORRUPT_FILE") from None
    if root is None:
        raise FileProblem("The file is empty", "EMPTY_FILE")
    return kind


def _point(element: Element, index: int, kind: str, found: _Found) -> None:
    what = "Trackpoint" if kind == TCX else "trkpt"
    values: dict[str, float] = {}
    at_text: str | None = None
    for child in _descendants(element):
        name = _local(child.tag)
        if name == "time" and at_text is None:
            at_text = (child.text or "").strip()
            continue
        metric = _XML_FIELDS.get(name)
        if metric is None or metric in values:
            continue
        holder = child
        if name == "heartratebpm":  # TCX: the number is in its <Value>
            holder = next((c for c in child if _local(c.tag) == "value"), child)
        text = (holder.text or "").strip()
        if not text and len(holder):
            continue  # a container of the same name (e.g. a GPX <power> wrapper): its children
        values[metric] = _number(text, f"{what} {index}: <{child.tag.rpartition('}')[2]}>")
    if not values:
        return
    if not at_text:
        raise FileProblem(f"{what} {index} has values but no <time>", "CORRUPT_FILE")
    found.add(_time(at_text, f"{what} {index}"), values)


def _descendants(element: Element) -> Iterator[Element]:
    for child in element:
        yield child
        yield from _descendants(child)


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise FileProblem(f"{where} is not a number: {text[:40]!r}", "CORRUPT_FILE") from None


def _time(text: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise FileProblem(f"{where}: not an ISO 8601 time: {text[:40]!r}", "CORRUPT_FILE") from None
