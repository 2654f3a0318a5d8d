"""The S3 backend (AWS S3, MinIO, or any S3-protocol server), through aioboto3.

Credentials come from the usual AWS environment (``AWS_ACCESS_KEY_ID`` …). A streamed write is
spooled to a local temporary file first, so that a stream passing its byte limit never reaches
the bucket and the upload itself can be multipart; reads stream from ``GetObject``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from puras_drive.storage import (
    CHUNK_BYTES,
    Listing,
    NotFound,
    StoredObject,
    spool_and_put,
    sweep_spool,
)

_MISSING = ("404", "NoSuchKey", "NotFound")
_DELETE_BATCH = 1000
"""DeleteObjects takes at most this many keys."""


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


class S3Backend:
    name = "s3"

    def __init__(self, *, bucket: str, endpoint: str | None, region: str, spool_dir: Path) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region
        self.spool_dir = spool_dir
        self._session = aioboto3.Session()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.spool_dir, 0o700)
        sweep_spool(self.spool_dir)
        config = AioConfig(
            s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}
        )
        self._client = await self._stack.enter_async_context(
            self._session.client(
                "s3", endpoint_url=self.endpoint, region_name=self.region, config=config
            )
        )
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if not _missing(exc):
                raise
            with contextlib.suppress(self._client.exceptions.BucketAlreadyOwnedByYou):
                await self._client.create_bucket(Bucket=self.bucket)

    async def close(self) -> None:
        await self._stack.aclose()

    def temp_path(self) -> Path:
        return self.spool_dir / f"spool-{uuid.uuid4().hex}"

    async def stat(self, key: str) -> StoredObject | None:
        try:
            head = await self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return StoredObject(
            key=key,
            bytes=head["ContentLength"],
            updated_at=head["LastModified"],
            content_type=head.get("ContentType"),
        )

    async def read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            if end is not None and end <= start:
                return
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = await self._client.get_object(**kwargs)
        except ClientError as exc:
            if _missing(exc) or exc.response.get("Error", {}).get("Code") == "InvalidRange":
                if _missing(exc):
                    raise NotFound(key) from None
                return
            raise
        body = response["Body"]
        try:
            while chunk := await body.read(CHUNK_BYTES):
                yield chunk
        finally:
            body.close()

    async def write(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str, limit: int | None = None
    ) -> StoredObject:
        return await spool_and_put(
            self, key, chunks, content_type=content_type, limit=limit, spool_dir=self.spool_dir
        )

    async def put_file(self, key: str, source: Path, *, content_type: str) -> StoredObject:
        try:
            await self._client.upload_file(
                str(source), self.bucket, key, ExtraArgs={"ContentType": content_type}
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(source)
        stored = await self.stat(key)
        assert stored is not None, f"{key} vanished right after its upload"
        return stored

    async def children(self, prefix: str) -> Listing:
        listing = Listing()
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", ()):
                listing.folders.append(common["Prefix"][len(prefix) :].rstrip("/"))
            for item in page.get("Contents", ()):
                if item["Key"] == prefix:
                    continue  # a "folder marker" object some S3 tools create
                listing.files.append(
                    StoredObject(
                        key=item["Key"], bytes=item["Size"], updated_at=item["LastModified"]
                    )
                )
        return listing

    async def walk(self, prefix: str) -> AsyncIterator[StoredObject]:
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                if item["Key"].endswith("/"):
                    continue
                yield StoredObject(
                    key=item["Key"], bytes=item["Size"], updated_at=item["LastModified"]
                )

    async def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            await self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
