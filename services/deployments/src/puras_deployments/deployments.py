"""Creating and activating deployments; each change and its event commit together."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from puras_common.api import ApiError, ErrorCode
from puras_common.events import DeploymentActivated, DeploymentCreated, SkillManifest
from puras_common.events.platform import DeploymentActivatedPayload, DeploymentCreatedPayload
from puras_common.ids import new_id
from puras_common.outbox import Outbox, UnitOfWork


async def _skillpack_for_update(conn: asyncpg.Connection, workspace_id: UUID, slug: str) -> asyncpg.Record:
    await conn.execute(
        "INSERT INTO skillpacks (id, workspace_id, slug) VALUES ($1, $2, $3) ON CONFLICT (workspace_id, slug) DO NOTHING",
        new_id(), workspace_id, slug,
    )
    return await conn.fetchrow(
        "SELECT * FROM skillpacks WHERE workspace_id = $1 AND slug = $2 FOR UPDATE", workspace_id, slug
    )


async def create(
    outbox: Outbox,
    *,
    workspace_id: UUID,
    skillpack: str,
    notes: str,
    activate: bool,
    skills: list[SkillManifest],
    bundle_sha256: str,
    bundle_bytes: int,
    has_requirements: bool,
) -> dict[str, Any]:
    """A new version of ``skillpack`` (created on first push), activated if asked."""
    async with outbox.transaction() as uow:
        pack = await _skillpack_for_update(uow.conn, workspace_id, skillpack)
        version = pack["next_version"]
        deployment_id = new_id()
        status = "ready"
        row = await uow.conn.fetchrow(
            """INSERT INTO deployments (id, skillpack_id, workspace_id, version, status, notes, bundle_sha256,
                                        bundle_bytes, has_requirements, skills)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING created_at""",
            deployment_id, pack["id"], workspace_id, version, status, notes, bundle_sha256, bundle_bytes,
            has_requirements, [s.model_dump(mode="json") for s in skills],
        )
        await uow.conn.execute("UPDATE skillpacks SET next_version = next_version + 1 WHERE id = $1", pack["id"])
        created = DeploymentCreated.new(
            DeploymentCreatedPayload(
                deployment_id=deployment_id,
                skillpack_id=pack["id"],
                skillpack_slug=pack["slug"],
                visibility=pack["visibility"],
                version=version,
                notes=notes,
                status=status,
                skills=tuple(skills),
                bundle_sha256=bundle_sha256,
                bundle_bytes=bundle_bytes,
            ),
            producer="deployments",
            workspace_id=workspace_id,
        )
        uow.emit(created)
        if activate:
            await _activate(uow, pack, deployment_id, version, caused_by=created)
    return {
        "id": str(deployment_id),
        "skillpack": pack["slug"],
        "skillpack_id": str(pack["id"]),
        "version": version,
        "status": status,
        "notes": notes,
        "active": activate,
        "bundle_sha256": bundle_sha256,
        "bundle_bytes": bundle_bytes,
        "skills": [
            {"name": s.name, "kind": s.kind.value, "entrypoint": s.entrypoint, "description": s.description}
            for s in skills
        ],
        "created_at": row["created_at"].isoformat(),
    }


async def _activate(
    uow: UnitOfWork, pack: asyncpg.Record, deployment_id: UUID, version: int, *, caused_by: Any = None
) -> None:
    if pack["active_deployment_id"] == deployment_id:
        return
    activation = pack["activation"] + 1
    await uow.conn.execute(
        "UPDATE skillpacks SET active_deployment_id = $2, activation = $3 WHERE id = $1",
        pack["id"], deployment_id, activation,
    )
    uow.emit(
        DeploymentActivated.new(
            DeploymentActivatedPayload(
                deployment_id=deployment_id,
                skillpack_id=pack["id"],
                skillpack_slug=pack["slug"],
                version=version,
                previous_deployment_id=pack["active_deployment_id"],
                activation=activation,
            ),
            producer="deployments",
            workspace_id=pack["workspace_id"],
            caused_by=caused_by,
        )
    )


async def get(conn: asyncpg.Connection | asyncpg.Pool, deployment_id: UUID) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM deployments WHERE id = $1", deployment_id)
    if row is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"deployment {deployment_id} not found")
    return row
