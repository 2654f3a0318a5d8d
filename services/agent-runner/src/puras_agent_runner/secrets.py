"""The secrets a job sees: its skillpack's, as environment variables of bash and user tools.

:class:`SecretSource` is the seam; the deployments service owns the values and hands them out
per job over NATS request/reply. Until that endpoint exists on a platform, :class:`NoSecrets`
gives none.
"""

from __future__ import annotations

from typing import Protocol

from puras_common.events import RunAgent


class SecretSource(Protocol):
    async def for_job(self, command: RunAgent) -> dict[str, str]:
        """The job's secrets by name."""
        ...


class NoSecrets:
    async def for_job(self, command: RunAgent) -> dict[str, str]:
        return {}
