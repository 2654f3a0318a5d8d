"""Bundle storage: each distinct zip once, named by its sha256; beside the bundles, the
wheelhouse of each distinct requirements.txt (a tar of the wheels its build produced). With a
mirror (S3), the local directory is this replica's copy of a store all replicas share."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from puras_common.api import ApiError, ErrorCode

from puras_deployments.mirror import S3Mirror


@dataclass(frozen=True)
class Received:
    path: Path
    sha256: str
    size: int


class BundleStore:
    def __init__(self, root: Path, *, mirror: S3Mirror | None = None) -> None:
        self.root = root
        self.mirror = mirror
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
                            ErrorCode.PAYLOAD_TOO_LARGE,
                            f"bundle exceeds {limit} bytes; the limit is {limit} bytes",
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            os.unlink(name)
            raise
        return Received(Path(name), digest.hexdigest(), size)

    async def keep(self, received: Received) -> Path:
        """Move a validated upload into the store (a no-op when the same bundle is there)."""
        final = self.path(received.sha256)
        if final.exists():
            received.path.unlink(missing_ok=True)
        else:
            os.replace(received.path, final)
        if self.mirror is not None:
            await self.mirror.upload(f"bundles/{received.sha256}.zip", final)
        return final

    async def bundle(self, sha256: str) -> Path:
        """The bundle's local file, fetched from the shared store if this replica lacks it."""
        path = self.path(sha256)
        if not path.exists() and self.mirror is not None:
            await self.mirror.fetch(f"bundles/{sha256}.zip", path)
        return path

    async def built_wheelhouse(self, requirements_sha256: str) -> Path | None:
        """The wheelhouse's local file if a build made one here or on another replica."""
        path = self.wheelhouse(requirements_sha256)
        if path.exists():
            return path
        if self.mirror is not None and await self.mirror.fetch(
            f"wheelhouses/{requirements_sha256}.tar", path
        ):
            return path
        return None

    async def share_wheelhouse(self, requirements_sha256: str) -> None:
        """Put a wheelhouse just built where every replica finds it."""
        if self.mirror is not None:
            path = self.wheelhouse(requirements_sha256)
            await self.mirror.upload(f"wheelhouses/{requirements_sha256}.tar", path)

    def path(self, sha256: str) -> Path:
        return self.bundles / f"{sha256}.zip"

    def wheelhouse(self, requirements_sha256: str) -> Path:
        """The wheelhouse tar of a build (it may not exist yet)."""
        return self.wheelhouses / f"{requirements_sha256}.tar"
