"""Live session data of API.md: samples, buckets, summaries and the recordMetrics mutation."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

import strawberry

from coachgraph.ids import decode_id, encode_cursor
from coachgraph.resolvers import live
from coachgraph.stores.metrics import Bucket, Sample, Summary

from .errors import ErrorResult, as_result
from .info import Info
from .relay import Connection


@strawberry.enum(description="bpm, W, rpm, m/s, ms")
class MetricKind(enum.Enum):
    HEART_RATE = "HEART_RATE"
    POWER = "POWER"
    CADENCE = "CADENCE"
    SPEED = "SPEED"
    HRV = "HRV"


@strawberry.type
class MetricSample:
    cursor: str
    kind: MetricKind
    at: datetime
    value: float

    @classmethod
    def from_sample(cls, s: Sample) -> MetricSample:
        return cls(cursor=encode_cursor(s.seq), kind=MetricKind(s.kind), at=s.at, value=s.value)


@strawberry.type(name="MetricSampleConnection")
class MetricSampleConnection(Connection[MetricSample]):
    is_compacted: strawberry.Private[Callable[[], Awaitable[bool]]]

    @strawberry.field(
        description="True when the session's raw samples were rolled up into 1-minute buckets "
        "and (some) dropped by retention: the list holds only the samples still kept; "
        "`series` (bucketSeconds a multiple of 60) and `summary` still cover all of them."
    )
    async def compacted(self) -> bool:
        return await self.is_compacted()


@strawberry.type
class MetricBucket:
    start: datetime
    count: int
    min: float
    max: float
    avg: float

    @classmethod
    def from_bucket(cls, b: Bucket) -> MetricBucket:
        return cls(start=b.start, count=b.count, min=b.min, max=b.max, avg=b.avg)


@strawberry.type
class SessionSummary:
    sample_count: int
    avg_heart_rate: float | None
    max_heart_rate: float | None
    duration_seconds: int | None

    @classmethod
    def from_summary(cls, s: Summary) -> SessionSummary:
        return cls(
            sample_count=s.sample_count,
            avg_heart_rate=s.avg_heart_rate,
            max_heart_rate=s.max_heart_rate,
            duration_seconds=s.duration_seconds,
        )


@strawberry.type
class RecordMetrics:
    accepted: int
    last_cursor: str | None


@strawberry.input
class MetricSampleInput:
    kind: MetricKind
    at: datetime
    value: float


def _sample_from_input(cls: type, value: Mapping[str, Any], context: object) -> Any:
    """graphql-core has coerced and checked the three fields already (enum, DateTime, Float);
    Strawberry's generic conversion per field cost more than the rest of a 1,000-sample
    recordMetrics together. Its documented hook builds the input directly instead."""
    return cls(kind=MetricKind(value["kind"]), at=value["at"], value=value["value"])


MetricSampleInput.__strawberry_definition__.from_input = _sample_from_input  # type: ignore[attr-defined]


RecordMetricsResult = Annotated[
    RecordMetrics | ErrorResult, strawberry.union("RecordMetricsResult")
]


@strawberry.type
class LiveMutation:
    @strawberry.mutation(description="Store up to 1000 samples of a LIVE session, all or none.")
    async def record_metrics(
        self, info: Info, session_id: strawberry.ID, samples: list[MetricSampleInput]
    ) -> RecordMetricsResult:
        ctx = info.context

        async def run() -> live.Recorded:
            raw_id = decode_id(session_id, "TrainingSession", field="sessionId")
            return await live.record(
                ctx.db,
                ctx.broker,
                ctx.viewer,
                raw_id,
                [(s.kind.value, s.at, s.value) for s in samples],
                ctx.settings.limits,
            )

        def present(done: live.Recorded) -> RecordMetrics:
            return RecordMetrics(accepted=done.count, last_cursor=encode_cursor(done.last_seq))

        return await as_result(run, present)
