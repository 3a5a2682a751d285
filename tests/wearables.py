"""Wearable files made by the tests, never downloaded: FIT written byte by byte (header,
definition and data messages, CRC, as the FIT protocol document lays them out), TCX and GPX as
Garmin devices and Strava exports write them (with the TrackPointExtension, ActivityExtension
and power elements)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime

FIT_EPOCH = datetime(1989, 12, 31, tzinfo=UTC)

# the FIT CRC-16 (protocol document, "CRC"): a nibble at a time
_CRC_TABLE = (
    0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
    0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400,
)  # fmt: skip


def fit_crc(data: bytes, crc: int = 0) -> int:
    for byte in data:
        tmp = _CRC_TABLE[crc & 0xF]
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ _CRC_TABLE[byte & 0xF]
        tmp = _CRC_TABLE[crc & 0xF]
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ _CRC_TABLE[(byte >> 4) & 0xF]
    return crc


@dataclass(frozen=True)
class Point:
    """One second of a ride, as a device records it; None: the sensor sent nothing."""

    at: datetime
    heart_rate: int | None = None
    power: int | None = None
    cadence: int | None = None
    speed: float | None = None  # m/s, millimetre precision in FIT

    def samples(self) -> list[tuple[str, datetime, float]]:
        """What the file holds of this point, in the order the route extracts it."""
        pairs = [
            ("HEART_RATE", self.heart_rate),
            ("POWER", self.power),
            ("CADENCE", self.cadence),
            ("SPEED", self.speed),
        ]
        return [(kind, self.at, float(v)) for kind, v in pairs if v is not None]


# base types: (number, struct format, invalid value)
UINT8 = (0x02, "B", 0xFF)
ENUM = (0x00, "B", 0xFF)
UINT16 = (0x84, "H", 0xFFFF)
UINT32 = (0x86, "I", 0xFFFFFFFF)
UINT32Z = (0x8C, "I", 0)


def _definition(
    local: int,
    global_number: int,
    fields: list[tuple[int, tuple[int, str, int]]],
    *,
    big_endian: bool = False,
) -> bytes:
    order = ">" if big_endian else "<"
    out = struct.pack("<BBB", 0x40 | local, 0, int(big_endian))
    out += struct.pack(order + "HB", global_number, len(fields))
    for number, (base, fmt, _) in fields:
        out += struct.pack("<BBB", number, struct.calcsize(fmt), base)
    return out


def _data(
    header: int,
    fields: list[tuple[int, tuple[int, str, int]]],
    values: list[int | None],
    *,
    big_endian: bool = False,
) -> bytes:
    out = bytes([header])
    for (_, (_, fmt, invalid)), value in zip(fields, values, strict=True):
        out += struct.pack((">" if big_endian else "<") + fmt, invalid if value is None else value)
    return out


def _fit_time(at: datetime) -> int:
    return int((at - FIT_EPOCH).total_seconds())


def fit_file(
    points: list[Point],
    *,
    protocol: int = 0x20,
    profile: int = 2132,
    big_endian: bool = False,
    compressed: bool = False,
) -> bytes:
    """An activity FIT file: a file_id message, then one `record` message a point.

    `big_endian`: the records' definition says architecture 1 and their values follow it.
    `compressed`: after the first, records carry their time in a compressed timestamp header
    (its 5-bit offset from the last full timestamp; points under 32 s apart), with no
    timestamp field, as many devices write them."""
    file_id = [(0, ENUM), (1, UINT16), (2, UINT16), (3, UINT32Z), (4, UINT32)]
    # record: timestamp (253), heart_rate (3), cadence (4), speed (6, mm/s), power (7)
    record = [(253, UINT32), (3, UINT8), (4, UINT8), (6, UINT16), (7, UINT16)]
    short = record[1:]  # the same without its timestamp (local message 2)
    created = _fit_time(points[0].at) if points else 0
    body = _definition(0, 0, file_id) + _data(0, file_id, [4, 1, 2697, 12345, created])
    body += _definition(1, 20, record, big_endian=big_endian)
    if compressed:
        body += _definition(2, 20, short, big_endian=big_endian)
    for i, p in enumerate(points):
        speed = None if p.speed is None else round(p.speed * 1000)
        values: list[int | None] = [p.heart_rate, p.cadence, speed, p.power]
        if compressed and i > 0:
            header = 0x80 | (2 << 5) | (_fit_time(p.at) & 0x1F)
            body += _data(header, short, values, big_endian=big_endian)
        else:
            body += _data(1, record, [_fit_time(p.at), *values], big_endian=big_endian)
    header = struct.pack("<BBHI4s", 14, protocol, profile, len(body), b".FIT")
    header += struct.pack("<H", fit_crc(header))
    whole = header + body
    return whole + struct.pack("<H", fit_crc(whole))


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def tcx_file(points: list[Point]) -> bytes:
    """A Garmin TCX activity: trackpoints with HeartRateBpm, Cadence and the ActivityExtension's
    Speed and Watts (and a lap summary whose numbers are not samples)."""
    rows = []
    for p in points:
        parts = [f"<Time>{_iso(p.at)}</Time>"]
        parts.append("<Position><LatitudeDegrees>38.7</LatitudeDegrees>"
                     "<LongitudeDegrees>-9.1</LongitudeDegrees></Position>")  # fmt: skip
        if p.heart_rate is not None:
            parts.append(f"<HeartRateBpm><Value>{p.heart_rate}</Value></HeartRateBpm>")
        if p.cadence is not None:
            parts.append(f"<Cadence>{p.cadence}</Cadence>")
        extension = ""
        if p.speed is not None:
            extension += f"<ns3:Speed>{p.speed}</ns3:Speed>"
        if p.power is not None:
            extension += f"<ns3:Watts>{p.power}</ns3:Watts>"
        if extension:
            parts.append(f"<Extensions><ns3:TPX>{extension}</ns3:TPX></Extensions>")
        rows.append("<Trackpoint>" + "".join(parts) + "</Trackpoint>")
    start = _iso(points[0].at) if points else "2026-01-01T00:00:00Z"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2" '
        'xmlns:ns3="http://www.garmin.com/xmlschemas/ActivityExtension/v2">'
        f'<Activities><Activity Sport="Biking"><Id>{start}</Id><Lap StartTime="{start}">'
        "<TotalTimeSeconds>60</TotalTimeSeconds><MaximumHeartRateBpm><Value>199</Value>"
        "</MaximumHeartRateBpm><Cadence>90</Cadence><Track>"
        + "".join(rows)
        + "</Track><Extensions><ns3:LX><ns3:AvgWatts>999</ns3:AvgWatts></ns3:LX></Extensions>"
        "</Lap></Activity></Activities></TrainingCenterDatabase>\n"
    ).encode()


def gpx_file(points: list[Point]) -> bytes:
    """A GPX 1.1 track as Garmin and Strava write it: hr, cad and speed in the
    TrackPointExtension, power as a bare <power> element."""
    rows = []
    for p in points:
        extension = ""
        if p.heart_rate is not None:
            extension += f"<gpxtpx:hr>{p.heart_rate}</gpxtpx:hr>"
        if p.cadence is not None:
            extension += f"<gpxtpx:cad>{p.cadence}</gpxtpx:cad>"
        if p.speed is not None:
            extension += f"<gpxtpx:speed>{p.speed}</gpxtpx:speed>"
        power = f"<power>{p.power}</power>" if p.power is not None else ""
        rows.append(
            f'<trkpt lat="38.7" lon="-9.1"><ele>12.4</ele><time>{_iso(p.at)}</time>'
            f"<extensions>{power}<gpxtpx:TrackPointExtension>{extension}"
            "</gpxtpx:TrackPointExtension></extensions></trkpt>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="coachgraph tests" xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">'
        "<metadata><time>2026-01-01T00:00:00Z</time></metadata>"
        "<trk><name>Ride</name><trkseg>" + "".join(rows) + "</trkseg></trk></gpx>\n"
    ).encode()
