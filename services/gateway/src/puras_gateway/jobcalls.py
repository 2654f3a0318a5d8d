"""Endpoints only a running job may call (``/v1/media/*``, ``/v1/subagents``): the caller must
present its job token (``PURAS_JOB_TOKEN``), and the job must not have ended, so a token that
outlives its job cannot start work that would be billed to the workspace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from puras_common import tokens
from puras_common.api import ApiError, ErrorCode, JobStatus
from puras_common.tokens import PREFIX as JOB_TOKEN_PREFIX

from puras_gateway import jobs
from puras_gateway.auth import GatewayDep
from puras_gateway.callers import job_claims, refuse_ended_attempt


@dataclass(frozen=True)
class JobCaller:
    """The job behind a job token, from the jobs read model."""

    workspace_id: UUID
    job_id: UUID
    skill_name: str
    skillpack_id: UUID
    skillpack_slug: str
    owner_workspace_id: UUID
    deployment_id: UUID
    version: int
    kind: str
    key_id: UUID | None
    attempt: int
    status: str
    parent_job_id: UUID | None


_AUDIENCES = (("/v1/media/", tokens.MEDIA), ("/v1/subagents", tokens.SUBAGENTS))
"""Which audience a job token needs, by route."""


async def job_caller(request: Request, gw: GatewayDep) -> JobCaller:
    """The calling job; 401 without a valid job token, 403 for an API key, 409 once it ended."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    what = f"{request.method} {request.url.path}"
    if not header:
        raise ApiError(
            ErrorCode.MISSING_KEY,
            f"{what} is called from inside a job with its token: send 'Authorization: Bearer $PURAS_JOB_TOKEN'",
        )
    if scheme.lower() != "bearer" or not token.startswith(JOB_TOKEN_PREFIX):
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"{what} is only for code running inside a job (puras.media / puras.subagent use the job's token); "
            "an API key cannot call it — run a skill that does",
        )
    audience = next((a for p, a in _AUDIENCES if request.url.path.startswith(p)), None)
    if audience is None:
        raise ApiError(ErrorCode.FORBIDDEN, f"{what} does not take a job token")
    claims = job_claims(gw, token, audience=audience)
    row = await jobs.running_as(gw.db, claims.job_id, claims.workspace_id)
    if row is None:
        raise ApiError(
            ErrorCode.INVALID_KEY, f"invalid job token: job {claims.job_id} is not known"
        )
    if JobStatus(row["status"]).terminal:
        raise ApiError(
            ErrorCode.CONFLICT,
            f"job {claims.job_id} has already {row['status']}; its token cannot start new work",
        )
    refuse_ended_attempt(claims, row["status"], row["attempt"])
    return JobCaller(workspace_id=claims.workspace_id, job_id=claims.job_id, **dict(row))


JobCallerDep = Annotated[JobCaller, Depends(job_caller)]
