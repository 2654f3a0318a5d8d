"""Bundles and wheelhouses in an S3-compatible store, so every replica of the deployments
service (on any machine) serves what any other received or built.

The local directory stays the working copy: a bundle is uploaded once it is kept, a wheelhouse
once it is built, and either is fetched into the local directory the first time this replica is
asked for one it does not have. Objects are named by content (sha256), so an upload that races
another replica's writes the same bytes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

_MISSING = ("404", "NoSuchKey", "NotFound")


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


class S3Mirror:
    """One bucket (``PURAS_DEPLOYMENTS_S3_BUCKET``), credentials from the AWS environment."""

    def __init__(self, *, bucket: str, endpoint: str | None, region: str) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        config = AioConfig(
            s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}
        )
        self._client = await self._stack.enter_async_context(
            aioboto3.Session().client(
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

    async def has(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    async def upload(self, key: str, source: Path) -> None:
        """Put ``source`` under ``key`` unless it is there (same key, same bytes)."""
        if not await self.has(key):
            await self._client.upload_file(str(source), self.bucket, key)

    async def fetch(self, key: str, target: Path) -> bool:
        """Download ``key`` to ``target`` (atomically); False if the store has no such key."""
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            await self._client.download_file(self.bucket, key, str(partial))
        except ClientError as exc:
            partial.unlink(missing_ok=True)
            if _missing(exc):
                return False
            raise
        os.replace(partial, target)
        return True
