"""Tenants: creating a workspace with its first key, and granting it credit."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg
from puras_common.api import ApiError, ErrorCode
from puras_common.events import CreditGranted, WorkspaceCreated
from puras_common.events.platform import CreditGrantedPayload, WorkspaceCreatedPayload
from puras_common.ids import new_id
from puras_common.outbox import Outbox, UnitOfWork

from puras_gateway import keys, ledger


@dataclass(frozen=True)
class NewWorkspace:
    id: UUID
    slug: str
    name: str
    key_id: UUID
    key_prefix: str
    api_key: str
    """Shown once."""


async def create_workspace(
    outbox: Outbox, *, slug: str, name: str, credit_micros: int
) -> NewWorkspace:
    """A workspace, its first secret key and (optionally) its opening credit, in one transaction."""
    workspace_id = new_id()
    try:
        async with outbox.transaction() as uow:
            await uow.conn.execute(
                "INSERT INTO workspaces (id, slug, name) VALUES ($1, $2, $3)",
                workspace_id,
                slug,
                name,
            )
            key_id, minted = await keys.insert(
                uow.conn, workspace_id=workspace_id, name="first key"
            )
            created = WorkspaceCreated.new(
                WorkspaceCreatedPayload(slug=slug, name=name),
                producer="gateway",
                workspace_id=workspace_id,
            )
            uow.emit(created)
            if credit_micros:
                await grant(
                    uow, workspace_id, credit_micros, note="opening credit", caused_by=created
                )
    except asyncpg.UniqueViolationError:
        raise ApiError(ErrorCode.CONFLICT, f"workspace {slug!r} already exists") from None
    return NewWorkspace(workspace_id, slug, name, key_id, minted.prefix, minted.token)


async def grant(
    uow: UnitOfWork,
    workspace_id: UUID,
    amount_micros: int,
    *,
    note: str,
    caused_by: WorkspaceCreated | None = None,
) -> CreditGranted:
    """Emit a credit grant; billing turns it into a ledger entry. Until it does, the grant
    counts towards the balance jobs are admitted on."""
    event = CreditGranted.new(
        CreditGrantedPayload(amount_micros=amount_micros, note=note),
        producer="gateway",
        workspace_id=workspace_id,
        caused_by=caused_by,
    )
    uow.emit(event)
    await ledger.record_grant(uow.conn, event.id, workspace_id, amount_micros)
    return event


async def grant_by_slug(
    outbox: Outbox, slug: str, amount_micros: int, *, note: str
) -> CreditGranted:
    """Grant credit to the workspace named ``slug``; 404 if there is none."""
    async with outbox.transaction() as uow:
        workspace_id = await uow.conn.fetchval("SELECT id FROM workspaces WHERE slug = $1", slug)
        if workspace_id is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"workspace {slug!r} not found")
        return await grant(uow, workspace_id, amount_micros, note=note)


async def slug_of(conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID) -> str | None:
    """A workspace's slug (None: no such workspace)."""
    slug: str | None = await conn.fetchval(
        "SELECT slug FROM workspaces WHERE id = $1", workspace_id
    )
    return slug
