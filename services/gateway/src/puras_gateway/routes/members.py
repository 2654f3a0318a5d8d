"""``/v1/members``: the people of a workspace, their roles, and invitations.

Everyone in the workspace (and its secret keys) may list its members. Inviting, changing a role
and removing are an owner's, signed in: an API key cannot add people to a workspace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode
from puras_common.ids import parse_id
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway import people
from puras_gateway.auth import GatewayDep, PrincipalDep, require_owner, require_person_owner
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.openapi import ERRORS

router = APIRouter(prefix="/v1/members", tags=["members"], responses=ERRORS)

Role = Literal["owner", "member"]


class MemberOut(BaseModel):
    user_id: UUID
    email: str
    role: Role
    joined_at: datetime
    last_sign_in_at: datetime | None


class MemberList(BaseModel):
    data: list[MemberOut]


class RoleIn(BaseModel):
    """``PATCH /v1/members/{user_id}`` body."""

    model_config = ConfigDict(extra="forbid")
    role: Role


class InvitationIn(BaseModel):
    """``POST /v1/members/invitations`` body."""

    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=people.MAX_EMAIL)
    role: Role = "member"


class InvitationOut(BaseModel):
    id: UUID
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime


class NewInvitation(BaseModel):
    id: UUID
    email: str
    role: Role
    expires_at: datetime
    token: str
    """Shown this once; only its hash is kept."""
    url: str
    """The link to send to the person invited: the console's page that accepts it."""


class InvitationList(BaseModel):
    data: list[InvitationOut]


def _member_id(user_id: str) -> UUID:
    parsed = parse_id(user_id)
    if parsed is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"user {user_id!r} is not a member")
    return parsed


@router.get("", response_model=MemberList)
async def list_members(gw: GatewayDep, who: PrincipalDep) -> MemberList:
    rows = await people.members(gw.db, who.workspace_id)
    return MemberList(data=[MemberOut(**dict(r)) for r in rows])


@router.patch("/{user_id}", response_model=MemberOut)
async def change_role(user_id: str, request: Request, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Make a member owner or member; the last owner cannot be demoted (409)."""
    require_person_owner(who, "members")
    body = parse_model(RoleIn, await read_capped(request, 4096))
    target = _member_id(user_id)
    await people.change_role(
        gw.outbox, workspace_id=who.workspace_id, user_id=target, role=body.role, by=who.user_id
    )
    row = next(r for r in await people.members(gw.db, who.workspace_id) if r["user_id"] == target)
    return MemberOut(**dict(row))


@router.delete("/{user_id}")
async def remove_member(user_id: str, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Remove a member (yourself included); the last owner cannot be removed (409)."""
    require_person_owner(who, "members")
    target = _member_id(user_id)
    await people.remove(gw.outbox, workspace_id=who.workspace_id, user_id=target, by=who.user_id)
    return {"removed": str(target)}


@router.get("/invitations", response_model=InvitationList)
async def list_invitations(gw: GatewayDep, who: PrincipalDep) -> InvitationList:
    """Invitations not yet accepted, withdrawn or expired."""
    require_owner(who, "invitations")
    rows = await people.open_invitations(gw.db, who.workspace_id)
    return InvitationList(data=[InvitationOut(**dict(r)) for r in rows])


@router.post("/invitations", status_code=201, response_model=NewInvitation)
async def invite(request: Request, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Invite an email address; the answer's ``url`` is the link to send them (shown once)."""
    require_person_owner(who, "members")
    body = parse_model(InvitationIn, await read_capped(request, 4096))
    invitation = await people.invite(
        gw.outbox,
        workspace_id=who.workspace_id,
        email=people.normalize_email(body.email),
        role=body.role,
        invited_by=who.user_id,
        lasts=gw.settings.invitation_seconds,
    )
    out = NewInvitation(
        id=invitation.id,
        email=invitation.email,
        role=invitation.role,
        expires_at=invitation.expires_at,
        token=invitation.token,
        url=f"{gw.settings.base_url}/console/invite#{invitation.token}",
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


@router.delete("/invitations/{invitation_id}")
async def withdraw(invitation_id: UUID, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Withdraw an invitation that was not accepted yet."""
    require_person_owner(who, "members")
    await people.revoke_invitation(
        gw.outbox, workspace_id=who.workspace_id, invitation_id=invitation_id
    )
    return {"withdrawn": str(invitation_id)}
