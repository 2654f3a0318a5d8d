"""Events of the PLATFORM stream about people: users (``user.<user_id>.…``) and their
memberships of workspaces (``member.<workspace_id>.…``).

A user's own events are keyed by the user, not by a workspace, because a person signs in once
and may belong to several workspaces. Password hashes, session tokens and invitation tokens
never appear in an event.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from puras_common import streams
from puras_common.envelope import Event, Payload

Role = Literal["owner", "member"]
"""Owners manage keys, secrets and members; members use everything else."""


class _UserEvent(Event):
    stream: ClassVar = streams.PLATFORM
    subject_pattern: ClassVar = "user.{user_id}.{verb}"
    verb: ClassVar[str]

    @property
    def subject(self) -> str:
        return f"user.{self.payload.user_id}.{self.verb}"  # type: ignore[attr-defined]


class UserCreatedPayload(Payload):
    user_id: UUID
    email: str
    via: Literal["admin", "invitation"]


class UserCreated(_UserEvent):
    """A person can sign in (created by an operator, or by accepting an invitation)."""

    verb: ClassVar = "created"
    type: Literal["user.created"] = "user.created"
    payload: UserCreatedPayload


class UserSignedInPayload(Payload):
    user_id: UUID
    session_id: UUID
    ip: str = ""
    user_agent: str = ""


class UserSignedIn(_UserEvent):
    """A session began: a password matched."""

    verb: ClassVar = "signed_in"
    type: Literal["user.signed_in"] = "user.signed_in"
    payload: UserSignedInPayload


class UserSignedOutPayload(Payload):
    user_id: UUID
    session_id: UUID


class UserSignedOut(_UserEvent):
    """A session was ended before it expired."""

    verb: ClassVar = "signed_out"
    type: Literal["user.signed_out"] = "user.signed_out"
    payload: UserSignedOutPayload


class UserPasswordSetPayload(Payload):
    user_id: UUID
    sessions_ended: int
    """Every other session of the user ends with a new password."""


class UserPasswordSet(_UserEvent):
    """A user's password was replaced by an operator."""

    verb: ClassVar = "password_set"
    type: Literal["user.password_set"] = "user.password_set"
    payload: UserPasswordSetPayload


class _MemberEvent(Event):
    stream: ClassVar = streams.PLATFORM


class MemberInvitedPayload(Payload):
    invitation_id: UUID
    email: str
    role: Role
    invited_by: UUID | None


class MemberInvited(_MemberEvent):
    """An owner invited an email address to the workspace (the link is shown once)."""

    subject_pattern: ClassVar = "member.{workspace_id}.invited"
    type: Literal["member.invited"] = "member.invited"
    payload: MemberInvitedPayload


class InvitationRevokedPayload(Payload):
    invitation_id: UUID
    email: str


class InvitationRevoked(_MemberEvent):
    """An invitation not yet accepted was withdrawn."""

    subject_pattern: ClassVar = "member.{workspace_id}.invitation_revoked"
    type: Literal["member.invitation_revoked"] = "member.invitation_revoked"
    payload: InvitationRevokedPayload


class MemberAddedPayload(Payload):
    user_id: UUID
    email: str
    role: Role
    invitation_id: UUID | None = None
    """None when an operator added the member."""


class MemberAdded(_MemberEvent):
    """A user became a member of the workspace."""

    subject_pattern: ClassVar = "member.{workspace_id}.added"
    type: Literal["member.added"] = "member.added"
    payload: MemberAddedPayload


class MemberRoleChangedPayload(Payload):
    user_id: UUID
    role: Role
    previous_role: Role
    changed_by: UUID | None


class MemberRoleChanged(_MemberEvent):
    """A member's role changed."""

    subject_pattern: ClassVar = "member.{workspace_id}.role_changed"
    type: Literal["member.role_changed"] = "member.role_changed"
    payload: MemberRoleChangedPayload


class MemberRemovedPayload(Payload):
    user_id: UUID
    email: str
    removed_by: UUID | None


class MemberRemoved(_MemberEvent):
    """A user is no longer a member of the workspace."""

    subject_pattern: ClassVar = "member.{workspace_id}.removed"
    type: Literal["member.removed"] = "member.removed"
    payload: MemberRemovedPayload


__all__ = [
    "InvitationRevoked",
    "MemberAdded",
    "MemberInvited",
    "MemberRemoved",
    "MemberRoleChanged",
    "Role",
    "UserCreated",
    "UserPasswordSet",
    "UserSignedIn",
    "UserSignedOut",
]
