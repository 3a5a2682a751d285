"""Data lifecycle of API.md (2026-11-30): eraseAthlete, exportAthleteData, auditEvents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from coachgraph.ids import decode_id
from coachgraph.resolvers import lifecycle
from coachgraph.stores.audit import AuditEvent as AuditRecord
from coachgraph.stores.erasure import Erasure as ErasureRecord

from .errors import ErrorResult, as_result
from .info import Info
from .relay import Connection, connection


@strawberry.type(description="An athlete removed from every store it was in.")
class Erasure:
    erased_at: datetime
    stores: list[str] = strawberry.field(
        description="Every store it was removed from; one missing is finished in the background"
    )

    @classmethod
    def from_record(cls, r: ErasureRecord) -> Erasure:
        return cls(erased_at=r.finished_at or r.requested_at, stores=list(r.stores))


ErasureResult = Annotated[Erasure | ErrorResult, strawberry.union("ErasureResult")]


@strawberry.type(description="A signed download of one JSON document: all that is stored.")
class DataExport:
    url: str
    expires_at: datetime


DataExportResult = Annotated[DataExport | ErrorResult, strawberry.union("DataExportResult")]


@strawberry.type
class LifecycleMutation:
    @strawberry.mutation(
        description="Remove the athlete and everything about it from every store (the athlete "
        "itself or an admin); its tokens stop working."
    )
    async def erase_athlete(self, info: Info, id: strawberry.ID) -> ErasureResult:
        async def run() -> ErasureRecord:
            raw_id = decode_id(id, "Athlete", field="id")
            return await lifecycle.erase_athlete(info.context, raw_id)

        return await as_result(run, Erasure.from_record)

    @strawberry.mutation(
        description="A signed, expiring URL of one JSON document with everything stored about "
        "the athlete (the athlete itself or an admin)."
    )
    async def export_athlete_data(self, info: Info, id: strawberry.ID) -> DataExportResult:
        async def run() -> tuple[str, datetime]:
            raw_id = decode_id(id, "Athlete", field="id")
            return await lifecycle.export_athlete_data(info.context, raw_id)

        return await as_result(run, lambda found: DataExport(url=found[0], expires_at=found[1]))


@strawberry.type(description="Who read or changed an athlete's data; no health values.")
class AuditEvent:
    at: datetime
    actor: str
    action: str
    subject: strawberry.ID = strawberry.field(
        description="The athlete, as an opaque id that outlives its erasure"
    )

    @classmethod
    def from_record(cls, r: AuditRecord) -> AuditEvent:
        return cls(at=r.at, actor=r.actor, action=r.action, subject=strawberry.ID(r.subject))


@strawberry.type
class LifecycleQuery:
    @strawberry.field(
        description="Admins: every event (or one subject's: an Athlete ID or an event's "
        "subject); an athlete: the events about itself."
    )
    async def audit_events(
        self,
        info: Info,
        subject_id: strawberry.ID | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[AuditEvent]:
        page, total = await lifecycle.audit_events(info.context, subject_id, first, after)
        return connection(page, AuditEvent.from_record, lambda r: r.id, after=after, total=total)
