"""People and their workspaces: the ``users``, ``memberships`` and ``invitations`` tables, and
the ``user.*`` / ``member.*`` events each change emits in the same transaction.

A workspace always keeps at least one owner: demoting or removing the last one is 409. Removing
a member takes effect on their next request (every request reads the membership).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from uuid import UUID

import asyncpg
from puras_common.api import ApiError, ErrorCode
from puras_common.events import (
    InvitationRevoked,
    MemberAdded,
    MemberInvited,
    MemberRemoved,
    MemberRoleChanged,
    UserCreated,
    UserPasswordSet,
)
from puras_common.events.people import (
    InvitationRevokedPayload,
    MemberAddedPayload,
    MemberInvitedPayload,
    MemberRemovedPayload,
    MemberRoleChangedPayload,
    Role,
    UserCreatedPayload,
    UserPasswordSetPayload,
)
from puras_common.ids import new_id, parse_id
from puras_common.outbox import Outbox, UnitOfWork

EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")
MAX_EMAIL: Final = 254

__all__ = ["Role", "normalize_email"]


def normalize_email(value: str, *, pointer: str = "/email") -> str:
    """An email as stored: trimmed and lower-cased; 400 when it is not an address."""
    email = value.strip().lower()
    if len(email) > MAX_EMAIL or not EMAIL.match(email):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"{value[:80]!r} is not an email address",
            details=[{"pointer": pointer, "message": "expected name@domain"}],
        )
    return email


async def find_user(conn: asyncpg.Pool | asyncpg.Connection, email: str) -> asyncpg.Record | None:
    """A user by (normalized) email, with the hash their password is checked against."""
    return await conn.fetchrow("SELECT id, email, password_hash FROM users WHERE email = $1", email)


async def workspaces_of(
    conn: asyncpg.Pool | asyncpg.Connection, user_id: UUID
) -> list[asyncpg.Record]:
    """The workspaces a user belongs to, with their role, by slug."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT w.id, w.slug, w.name, m.role FROM memberships m
           JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = $1 ORDER BY w.slug""",
        user_id,
    )
    return rows


async def membership(
    conn: asyncpg.Pool | asyncpg.Connection, user_id: UUID, workspace: str
) -> asyncpg.Record | None:
    """A user's membership of the workspace named by slug or id (None: not a member)."""
    workspace_id = parse_id(workspace)
    return await conn.fetchrow(
        """SELECT w.id, w.slug, m.role FROM memberships m JOIN workspaces w ON w.id = m.workspace_id
           WHERE m.user_id = $1 AND (w.slug = $2 OR w.id = $3)""",
        user_id,
        workspace,
        workspace_id,
    )


@dataclass(frozen=True)
class Added:
    user_id: UUID
    email: str
    role: Role
    created: bool
    """False: the user existed and only joined the workspace."""


async def add_user(
    outbox: Outbox,
    *,
    workspace_slug: str,
    email: str,
    password_hash: str | None,
    role: Role,
    reset_password: bool = False,
) -> Added:
    """An operator's ``create-user``: the user (created with ``password_hash`` unless they exist),
    a member of the workspace with ``role``; with ``reset_password`` an existing user's password
    is replaced and their sessions end."""
    async with outbox.transaction() as uow:
        workspace_id = await uow.conn.fetchval(
            "SELECT id FROM workspaces WHERE slug = $1", workspace_slug
        )
        if workspace_id is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"workspace {workspace_slug!r} not found")
        user = await find_user(uow.conn, email)
        created = user is None
        if user is None:
            assert password_hash is not None
            user_id = await _create_user(uow, workspace_id, email, password_hash, via="admin")
        else:
            user_id = user["id"]
            if reset_password and password_hash is not None:
                await _set_password(uow, user_id, password_hash)
        held = await _join(uow, workspace_id, user_id, email, role, invitation_id=None)
    return Added(user_id, email, held, created)


async def _create_user(
    uow: UnitOfWork,
    workspace_id: UUID,
    email: str,
    password_hash: str,
    *,
    via: Literal["admin", "invitation"],
) -> UUID:
    user_id: UUID = new_id()
    await uow.conn.execute(
        "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)",
        user_id,
        email,
        password_hash,
    )
    uow.emit(
        UserCreated.new(
            UserCreatedPayload(user_id=user_id, email=email, via=via),
            producer="gateway",
            workspace_id=workspace_id,
        )
    )
    return user_id


async def _set_password(uow: UnitOfWork, user_id: UUID, password_hash: str) -> None:
    await uow.conn.execute(
        "UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1",
        user_id,
        password_hash,
    )
    ended = await uow.conn.fetchval(
        """WITH e AS (UPDATE sessions SET ended_at = now()
                      WHERE user_id = $1 AND ended_at IS NULL RETURNING 1)
           SELECT count(*) FROM e""",
        user_id,
    )
    uow.emit(
        UserPasswordSet.new(
            UserPasswordSetPayload(user_id=user_id, sessions_ended=ended), producer="gateway"
        )
    )


async def _join(
    uow: UnitOfWork,
    workspace_id: UUID,
    user_id: UUID,
    email: str,
    role: Role,
    *,
    invitation_id: UUID | None,
) -> Role:
    """Make the user a member (already one: their role stays as it is); returns their role."""
    inserted = await uow.conn.fetchval(
        """INSERT INTO memberships (workspace_id, user_id, role) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        workspace_id,
        user_id,
        role,
    )
    if inserted:
        uow.emit(
            MemberAdded.new(
                MemberAddedPayload(
                    user_id=user_id, email=email, role=role, invitation_id=invitation_id
                ),
                producer="gateway",
                workspace_id=workspace_id,
            )
        )
        return role
    held: Role = await uow.conn.fetchval(
        "SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2",
        workspace_id,
        user_id,
    )
    return held


async def members(
    conn: asyncpg.Pool | asyncpg.Connection, workspace_id: UUID
) -> list[asyncpg.Record]:
    """A workspace's members with their role and when they last signed in."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT u.id AS user_id, u.email, m.role, m.created_at AS joined_at,
                  (SELECT max(s.created_at) FROM sessions s WHERE s.user_id = u.id) AS last_sign_in_at
           FROM memberships m JOIN users u ON u.id = m.user_id
           WHERE m.workspace_id = $1 ORDER BY m.created_at, u.email""",
        workspace_id,
    )
    return rows


async def _locked_members(uow: UnitOfWork, workspace_id: UUID) -> list[asyncpg.Record]:
    """The workspace's memberships, locked, so two changes cannot both remove the last owner."""
    rows: list[asyncpg.Record] = await uow.conn.fetch(
        """SELECT m.user_id, m.role, u.email FROM memberships m JOIN users u ON u.id = m.user_id
           WHERE m.workspace_id = $1 ORDER BY m.user_id FOR UPDATE OF m""",
        workspace_id,
    )
    return rows


def _last_owner(rows: list[asyncpg.Record], target: asyncpg.Record) -> bool:
    owners = [r for r in rows if r["role"] == "owner"]
    return target["role"] == "owner" and len(owners) == 1


async def change_role(
    outbox: Outbox, *, workspace_id: UUID, user_id: UUID, role: Role, by: UUID | None
) -> None:
    """Give a member another role; 404 for a non-member, 409 for demoting the last owner."""
    async with outbox.transaction() as uow:
        rows = await _locked_members(uow, workspace_id)
        target = next((r for r in rows if r["user_id"] == user_id), None)
        if target is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"user {user_id} is not a member")
        if target["role"] == role:
            return
        if _last_owner(rows, target):
            raise ApiError(
                ErrorCode.CONFLICT,
                f"{target['email']} is the workspace's last owner; make another member owner first",
            )
        await uow.conn.execute(
            "UPDATE memberships SET role = $3 WHERE workspace_id = $1 AND user_id = $2",
            workspace_id,
            user_id,
            role,
        )
        uow.emit(
            MemberRoleChanged.new(
                MemberRoleChangedPayload(
                    user_id=user_id, role=role, previous_role=target["role"], changed_by=by
                ),
                producer="gateway",
                workspace_id=workspace_id,
            )
        )


async def remove(outbox: Outbox, *, workspace_id: UUID, user_id: UUID, by: UUID | None) -> None:
    """Remove a member; 404 for a non-member, 409 for the last owner."""
    async with outbox.transaction() as uow:
        rows = await _locked_members(uow, workspace_id)
        target = next((r for r in rows if r["user_id"] == user_id), None)
        if target is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"user {user_id} is not a member")
        if _last_owner(rows, target):
            raise ApiError(
                ErrorCode.CONFLICT,
                f"{target['email']} is the workspace's last owner and cannot be removed",
            )
        await uow.conn.execute(
            "DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2",
            workspace_id,
            user_id,
        )
        uow.emit(
            MemberRemoved.new(
                MemberRemovedPayload(user_id=user_id, email=target["email"], removed_by=by),
                producer="gateway",
                workspace_id=workspace_id,
            )
        )


@dataclass(frozen=True)
class Invitation:
    id: UUID
    email: str
    role: Role
    expires_at: datetime
    token: str
    """Shown once, in the link; only its sha256 is kept."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def invite(
    outbox: Outbox,
    *,
    workspace_id: UUID,
    email: str,
    role: Role,
    invited_by: UUID | None,
    lasts: int,
) -> Invitation:
    """An invitation for ``email``; 409 when that person is already a member."""
    token = secrets.token_urlsafe(32)
    invitation_id = new_id()
    expires_at = datetime.now(UTC) + timedelta(seconds=lasts)
    async with outbox.transaction() as uow:
        already = await uow.conn.fetchval(
            """SELECT true FROM memberships m JOIN users u ON u.id = m.user_id
               WHERE m.workspace_id = $1 AND u.email = $2""",
            workspace_id,
            email,
        )
        if already:
            raise ApiError(ErrorCode.CONFLICT, f"{email} is already a member of this workspace")
        await uow.conn.execute(
            """INSERT INTO invitations (id, workspace_id, email, role, token_sha256, invited_by, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            invitation_id,
            workspace_id,
            email,
            role,
            _digest(token),
            invited_by,
            expires_at,
        )
        uow.emit(
            MemberInvited.new(
                MemberInvitedPayload(
                    invitation_id=invitation_id, email=email, role=role, invited_by=invited_by
                ),
                producer="gateway",
                workspace_id=workspace_id,
            )
        )
    return Invitation(invitation_id, email, role, expires_at, token)


async def open_invitations(
    conn: asyncpg.Pool | asyncpg.Connection, workspace_id: UUID
) -> list[asyncpg.Record]:
    """Invitations neither accepted, withdrawn nor expired, newest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, email, role, created_at, expires_at FROM invitations
           WHERE workspace_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL
             AND expires_at > now()
           ORDER BY id DESC""",
        workspace_id,
    )
    return rows


async def revoke_invitation(outbox: Outbox, *, workspace_id: UUID, invitation_id: UUID) -> None:
    """Withdraw an open invitation; 404 for one that is not open in this workspace."""
    async with outbox.transaction() as uow:
        email = await uow.conn.fetchval(
            """UPDATE invitations SET revoked_at = now()
               WHERE id = $1 AND workspace_id = $2 AND accepted_at IS NULL AND revoked_at IS NULL
               RETURNING email""",
            invitation_id,
            workspace_id,
        )
        if email is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"invitation {invitation_id} not found")
        uow.emit(
            InvitationRevoked.new(
                InvitationRevokedPayload(invitation_id=invitation_id, email=email),
                producer="gateway",
                workspace_id=workspace_id,
            )
        )


async def pending(conn: asyncpg.Pool | asyncpg.Connection, token: str) -> asyncpg.Record:
    """The open invitation behind a token, with whether its email has an account; 404 otherwise."""
    row = await conn.fetchrow(
        """SELECT i.id, i.workspace_id, i.email, i.role, w.slug, w.name,
                  (SELECT password_hash FROM users u WHERE u.email = i.email) AS password_hash,
                  (SELECT id FROM users u WHERE u.email = i.email) AS user_id
           FROM invitations i JOIN workspaces w ON w.id = i.workspace_id
           WHERE i.token_sha256 = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL
             AND i.expires_at > now()""",
        _digest(token),
    )
    if row is None:
        raise ApiError(
            ErrorCode.NOT_FOUND,
            "invitation not found: it was accepted, withdrawn or has expired; ask for a new one",
        )
    return row


async def accept(outbox: Outbox, *, invitation: asyncpg.Record, password_hash: str | None) -> UUID:
    """Accept an invitation: the user (created with ``password_hash`` when new) joins the
    workspace with the invited role. Returns the user's id."""
    async with outbox.transaction() as uow:
        taken = await uow.conn.fetchval(
            """UPDATE invitations SET accepted_at = now()
               WHERE id = $1 AND accepted_at IS NULL AND revoked_at IS NULL RETURNING true""",
            invitation["id"],
        )
        if not taken:
            raise ApiError(ErrorCode.CONFLICT, "this invitation was just accepted or withdrawn")
        user_id: UUID | None = invitation["user_id"]
        if user_id is None:
            assert password_hash is not None
            user_id = await _create_user(
                uow,
                invitation["workspace_id"],
                invitation["email"],
                password_hash,
                via="invitation",
            )
        await _join(
            uow,
            invitation["workspace_id"],
            user_id,
            invitation["email"],
            invitation["role"],
            invitation_id=invitation["id"],
        )
    return user_id
