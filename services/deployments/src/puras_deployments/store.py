"""Bundle storage: each distinct zip once, named by its sha256; beside the bundles, the
wheelhouse of each distinct requirements.txt (a tar of the wheels its build produced)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from puras_common.api import ApiError, ErrorCode


@dataclass(frozen=True)
class Received:
    path: Path
    sha256: str
    size: int


class BundleStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.bundles = root / "bundles"
        self.wheelhouses = root / "wheelhouses"
        for d in (self.incoming, self.bundles, self.wheelhouses):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)

    async def receive(self, chunks: AsyncIterator[bytes], *, limit: int) -> Received:
        """Spool an upload to disk while hashing it; 413 once it passes ``limit``."""
        digest = hashlib.sha256()
        size = 0
        fd, name = tempfile.mkstemp(dir=self.incoming, suffix=".zip")
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(
                            ErrorCode.PAYLOAD_TOO_LARGE, f"bundle exceeds {limit} bytes; the limit is {limit} bytes"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            os.unlink(name)
            raise
        return Received(Path(name), digest.hexdigest(), size)

    def keep(self, received: Received) -> Path:
        """Move a validated upload into the store (a no-op when the same bundle is there)."""
        final = self.path(received.sha256)
        if final.exists():
            received.path.unlink(missing_ok=True)
        else:
            os.replace(received.path, final)
        return final

    def path(self, sha256: str) -> Path:
        return self.bundles / f"{sha256}.zip"

    def wheelhouse(self, requirements_sha256: str) -> Path:
        """The wheelhouse tar of a build (it may not exist yet)."""
        return self.wheelhouses / f"{requirements_sha256}.tar"
