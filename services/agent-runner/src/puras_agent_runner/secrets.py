"""The secrets a job sees: its skillpack's, as environment variables of bash and user tools.

They reach an agent job exactly as they reach a function job: asked for over NATS with the
job's token, sealed to this runner (:func:`puras_common.secret_delivery.fetch_secrets`), and
masked in everything the job shows. :class:`SecretSource` is the seam tests replace.
"""

from __future__ import annotations

from typing import Protocol

from nats.aio.client import Client as NATS
from puras_common.events import RunAgent
from puras_common.secret_delivery import fetch_secrets


class SecretSource(Protocol):
    async def for_job(self, command: RunAgent, token: str) -> dict[str, str]:
        """The job's secrets by name; ``token`` is the secrets token of the job's attempt, which
        names them."""
        ...


class DeliveredSecrets:
    """The deployments service's secrets, delivered per job (the platform's source)."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc

    async def for_job(self, command: RunAgent, token: str) -> dict[str, str]:
        assert command.job_id is not None
        return await fetch_secrets(self.nc, job_token=token, job_id=command.job_id)
