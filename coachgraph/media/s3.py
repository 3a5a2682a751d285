"""Media in S3 (or MinIO): presigned POST uploads with a policy, presigned GET downloads."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

from coachgraph.config import Settings, SettingsError
from coachgraph.media.model import StoredObject, UploadTicket


class S3MediaStore:
    """One bucket; the client opens in `start` and closes in `close`."""

    name = "s3"

    def __init__(self, settings: Settings) -> None:
        assert settings.s3_bucket
        self.bucket = settings.s3_bucket
        self._session = aioboto3.Session(
            aws_access_key_id=settings.aws_access_key_id,
            aws_secret_access_key=settings.aws_secret_access_key,
            region_name=settings.aws_region or "us-east-1",
        )
        self._endpoint = settings.s3_endpoint_url
        self._exits = AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        config = Config(
            signature_version="s3v4",
            # MinIO and other endpoints serve buckets by path, not by host name
            s3={"addressing_style": "path" if self._endpoint else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
        )
        self._client = await self._exits.enter_async_context(
            self._session.client("s3", endpoint_url=self._endpoint, config=config)
        )
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            await self.close()
            raise SettingsError(f"S3 bucket {self.bucket!r} is not reachable: {err}") from None

    async def close(self) -> None:
        await self._exits.aclose()

    async def upload_ticket(
        self, *, key: str, content_type: str, size_bytes: int, expires_in: int, base_url: str
    ) -> UploadTicket:
        # S3 refuses a POST whose file is not exactly this size and type, or names another key
        post = await self._client.generate_presigned_post(
            self.bucket,
            key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", size_bytes, size_bytes],
            ],
            ExpiresIn=expires_in,
        )
        return UploadTicket(
            method="POST",
            url=post["url"],
            headers={},
            fields=dict(post["fields"]),
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        )

    async def stat(self, *, key: str) -> StoredObject | None:
        try:
            head = await self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        etag = str(head.get("ETag", "")).strip('"')
        return StoredObject(int(head["ContentLength"]), head.get("ContentType"), f"etag:{etag}")

    async def read_head(self, *, key: str, length: int) -> bytes:
        got = await self._client.get_object(
            Bucket=self.bucket, Key=key, Range=f"bytes=0-{length - 1}"
        )
        async with got["Body"] as body:
            data: bytes = await body.read()
        return data[:length]

    async def download_url(self, *, key: str, expires_in: int, base_url: str) -> str:
        url: str = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    async def delete(self, *, key: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=key)
