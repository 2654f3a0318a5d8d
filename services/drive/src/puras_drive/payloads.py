"""Payload objects: job inputs and results too large for the bus, on local disk.

Keys are ``payloads/<workspace_id>/<job_id>/<name>.json``; anything else is refused.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from puras_common.api import ApiError, ErrorCode

KEY = re.compile(r"^payloads/[0-9a-f-]{36}/[0-9a-f-]{36}/[a-z_]{1,32}\.json$")


class PayloadFiles:
    def __init__(self, root: Path) -> None:
        self.root = root / "_payloads"
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def path(self, key: str) -> Path:
        if not KEY.match(key):
            raise ApiError(ErrorCode.INVALID_REQUEST, f"not a payload key: {key!r}")
        return self.root / key

    async def write(self, key: str, chunks: AsyncIterator[bytes], *, limit: int) -> int:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"payload exceeds {limit} bytes")
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        return size
