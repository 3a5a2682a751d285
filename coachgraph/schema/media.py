"""Media of API.md: the Media node, upload tickets, and the upload/complete/delete mutations."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, cast

import strawberry
from strawberry.scalars import JSON

from coachgraph.ids import decode_id, from_global_id, to_global_id
from coachgraph.resolvers import media as media_resolvers
from coachgraph.resolvers.media import Ticket
from coachgraph.stores.records import MediaRecord

from .errors import ErrorResult, as_result
from .info import Info
from .node import Node


@strawberry.enum
class MediaKind(enum.Enum):
    AVATAR = "AVATAR"
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    DOCUMENT = "DOCUMENT"


@strawberry.enum
class MediaStatus(enum.Enum):
    PENDING = "PENDING"
    READY = "READY"


@strawberry.type
class Media(Node):
    kind: MediaKind
    content_type: str
    size_bytes: int
    status: MediaStatus
    checksum: str | None = strawberry.field(description="Of the stored bytes, once READY.")
    created_at: datetime
    record: strawberry.Private[MediaRecord]

    @classmethod
    def from_record(cls, r: MediaRecord) -> Media:
        return cls(
            id=strawberry.ID(to_global_id("Media", r.id)),
            kind=MediaKind(r.kind),
            content_type=r.content_type,
            size_bytes=r.size_bytes,
            status=MediaStatus(r.status),
            checksum=r.checksum,
            created_at=r.created_at,
            record=r,
        )

    @strawberry.field(description="A fresh download URL (expires within 15 min); null until READY.")
    async def url(self, info: Info) -> str | None:
        return await media_resolvers.download_url(info.context, self.record)


@strawberry.type(name="UploadTicket")
class UploadTicketType:
    media: Media
    method: str = strawberry.field(description="PUT (send the bytes as the body) or POST (form).")
    url: str
    headers: JSON = strawberry.field(description="Headers to send with the upload.")
    fields: JSON = strawberry.field(description="Form fields to send before the file (POST).")
    expires_at: datetime

    @classmethod
    def from_ticket(cls, t: Ticket) -> UploadTicketType:
        return cls(
            media=Media.from_record(t.media),
            method=t.upload.method,
            url=t.upload.url,
            headers=cast(JSON, t.upload.headers),
            fields=cast(JSON, t.upload.fields),
            expires_at=t.upload.expires_at,
        )


@strawberry.input
class CreateUploadInput:
    owner_id: strawberry.ID = strawberry.field(description="A Coach, Athlete, Program or session.")
    kind: MediaKind
    content_type: str
    size_bytes: int = strawberry.field(description="Exact size of the file in bytes.")


UploadResult = Annotated[UploadTicketType | ErrorResult, strawberry.union("UploadResult")]
MediaResult = Annotated[Media | ErrorResult, strawberry.union("MediaResult")]


def _media_id(value: strawberry.ID, field: str) -> int:
    return decode_id(value, "Media", field=field)


@strawberry.type
class MediaMutation:
    @strawberry.mutation(description="A signed ticket to upload the bytes straight to storage.")
    async def create_upload(self, info: Info, input: CreateUploadInput) -> UploadResult:
        async def run() -> Ticket:
            owner_type, owner_id = from_global_id(input.owner_id, field="ownerId")
            return await media_resolvers.create_upload(
                info.context,
                owner_type=owner_type,
                owner_id=owner_id,
                kind=input.kind.value,
                content_type=input.content_type,
                size_bytes=input.size_bytes,
            )

        return await as_result(run, UploadTicketType.from_ticket)

    @strawberry.mutation(description="Verify the uploaded bytes and mark the media READY.")
    async def complete_upload(self, info: Info, media_id: strawberry.ID) -> MediaResult:
        return await as_result(
            lambda: media_resolvers.complete_upload(info.context, _media_id(media_id, "mediaId")),
            Media.from_record,
        )

    @strawberry.mutation(description="Remove the media and its bytes.")
    async def delete_media(self, info: Info, id: strawberry.ID) -> MediaResult:
        return await as_result(
            lambda: media_resolvers.delete_media(info.context, _media_id(id, "id")),
            Media.from_record,
        )
