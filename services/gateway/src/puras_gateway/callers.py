"""Callers of endpoints that jobs may use too: an API key, or the job token a runner gives each
job (``PURAS_JOB_TOKEN``), so in-skill SDK calls (``puras.drive.sign`` …) reach the same API,
scoped to the job's workspace and billed to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from puras_common.api import ApiError, ErrorCode
from puras_common.tokens import PREFIX as JOB_TOKEN_PREFIX
from puras_common.tokens import TokenError, verify_job_token

from puras_gateway.auth import GatewayDep, principal


@dataclass(frozen=True)
class Caller:
    """Whoever is calling, reduced to what workspace-scoped endpoints need."""

    workspace_id: UUID
    key_id: UUID | None = None
    key_kind: str | None = None
    job_id: UUID | None = None
    skill_name: str | None = None
    """For a job token: the job's skill, from the jobs read model."""

    @property
    def is_job(self) -> bool:
        return self.job_id is not None


async def caller(request: Request, gw: GatewayDep) -> Caller:
    """An API key, or a valid job token; 401 otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token.startswith(JOB_TOKEN_PREFIX):
        try:
            claims = verify_job_token(gw.settings.job_token_key.get_secret_value(), token)
        except (TokenError, ValueError, KeyError) as exc:
            raise ApiError(ErrorCode.INVALID_KEY, f"invalid job token: {exc}") from None
        skill = await gw.db.fetchval(
            "SELECT skill_name FROM jobs WHERE id = $1 AND workspace_id = $2", claims.job_id, claims.workspace_id
        )
        return Caller(workspace_id=claims.workspace_id, job_id=claims.job_id, skill_name=skill)
    who = await principal(request, gw)
    return Caller(workspace_id=who.workspace_id, key_id=who.key_id, key_kind=who.kind)


CallerDep = Annotated[Caller, Depends(caller)]
