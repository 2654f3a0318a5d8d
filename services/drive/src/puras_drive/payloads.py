"""Payload objects: job inputs and results too large for the bus, kept on the drive's backend
under ``_payloads/`` (outside every workspace's prefix, so no workspace path can name them).

Keys are ``payloads/<workspace_id>/<job_id>/<name>.json``; anything else is refused.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator

from puras_common.api import ApiError, ErrorCode

from puras_drive.storage import Backend

KEY = re.compile(r"^payloads/[0-9a-f-]{36}/[0-9a-f-]{36}/[a-z0-9_]{1,32}\.json$")
AREA = "_payloads/"


class Payloads:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _key(self, key: str) -> str:
        if not KEY.match(key):
            raise ApiError(ErrorCode.INVALID_REQUEST, f"not a payload key: {key!r}")
        return AREA + key

    async def write(self, key: str, chunks: AsyncIterable[bytes], *, limit: int) -> int:
        stored = await self.backend.write(
            self._key(key), chunks, content_type="application/json", limit=limit
        )
        return stored.bytes

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """The payload's bytes; ``NotFound`` before the first chunk if it is absent."""
        stream = self.backend.read(self._key(key))
        first = await anext(stream, None)

        async def chunks() -> AsyncIterator[bytes]:
            if first is not None:
                yield first
            async for chunk in stream:
                yield chunk

        return chunks()
