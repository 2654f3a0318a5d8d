"""Callers of endpoints that jobs may use too: an API key or a person signed in, or the job token
a runner gives each job (``PURAS_JOB_TOKEN``), so in-skill SDK calls (``puras.drive.sign`` …) reach the same API,
scoped to the job's workspace and billed to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from puras_common import tokens
from puras_common.api import ApiError, ErrorCode, JobStatus
from puras_common.tokens import PREFIX as JOB_TOKEN_PREFIX
from puras_common.tokens import TokenError, verify_job_token

from puras_gateway import jobs
from puras_gateway.auth import GatewayDep, WorkspaceQuery, principal
from puras_gateway.context import Gateway


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


async def caller(request: Request, gw: GatewayDep, workspace: WorkspaceQuery = None) -> Caller:
    """An API key or a person signed in, or a valid job token; 401 otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token.startswith(JOB_TOKEN_PREFIX):
        claims = job_claims(gw, token, audience=tokens.DRIVE)
        row = await jobs.running_as(gw.db, claims.job_id, claims.workspace_id)
        if row is not None:
            refuse_ended_attempt(claims, row["status"], row["attempt"])
        skill = row["skill_name"] if row is not None else None
        return Caller(workspace_id=claims.workspace_id, job_id=claims.job_id, skill_name=skill)
    who = await principal(request, gw, workspace)
    return Caller(workspace_id=who.workspace_id, key_id=who.key_id, key_kind=who.kind)


def job_claims(gw: Gateway, token: str, *, audience: str) -> tokens.JobClaims:
    """A job token's claims if it is genuine, unexpired and meant for ``audience``; 401 if not."""
    try:
        return verify_job_token(
            gw.settings.job_token_key.get_secret_value(), token, audience=audience
        )
    except (TokenError, ValueError, KeyError) as exc:
        raise ApiError(ErrorCode.INVALID_KEY, f"invalid job token: {exc}") from None


def refuse_ended_attempt(claims: tokens.JobClaims, status: str, attempt: int) -> None:
    """401 unless the token's attempt is the job's current one and the job has not ended: a
    token works only while its attempt runs. (The read model may not know a new attempt yet,
    so a later attempt than it knows is taken as the current one.)"""
    if JobStatus(status).terminal:
        raise ApiError(
            ErrorCode.INVALID_KEY,
            f"invalid job token: job {claims.job_id} has {status}; its token no longer works",
        )
    if claims.attempt < attempt:
        raise ApiError(
            ErrorCode.INVALID_KEY,
            f"invalid job token: it is attempt {claims.attempt}'s, and job {claims.job_id} "
            f"is on attempt {attempt}",
        )


CallerDep = Annotated[Caller, Depends(caller)]
