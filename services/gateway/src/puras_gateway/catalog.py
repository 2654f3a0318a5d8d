"""The skill catalogue read model (from ``deployment.*`` events) and skill addressing.

A skill is addressed as ``skill`` (in the key's default skillpack or the ``skillpack`` field),
``skillpack/skill`` (in the caller's workspace) or ``workspace/skillpack/skill`` (a public
skillpack of any workspace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from puras_common.api import ApiError, ErrorCode
from puras_common.bus import Delivery
from puras_common.events import (
    DeploymentActivated,
    DeploymentBuilt,
    DeploymentCreated,
    DeploymentDeleted,
    SkillpackUpdated,
)
from puras_common.ids import parse_id
from puras_common.outbox import UnitOfWork

from puras_gateway.notify import CATALOG_CHANNEL

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


async def apply(uow: UnitOfWork, d: Delivery) -> None:
    """Fold one deployment event into the catalogue."""
    conn, event = uow.conn, d.event
    if isinstance(event, DeploymentCreated):
        p = event.payload
        await _upsert_skillpack(conn, p.skillpack_id, event.workspace_id, p.skillpack_slug, p.visibility)
        await conn.execute(
            """INSERT INTO deployments (id, skillpack_id, workspace_id, version, status, notes, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING""",
            p.deployment_id, p.skillpack_id, event.workspace_id, p.version, p.status, p.notes, event.occurred_at,
        )
        await conn.executemany(
            """INSERT INTO skills (deployment_id, name, kind, entrypoint, description, model,
                                   input_schema, output_schema, timeout_seconds)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING""",
            [
                (p.deployment_id, s.name, s.kind.value, s.entrypoint, s.description, s.model,
                 s.input_schema, s.output_schema, s.timeout_seconds)
                for s in p.skills
            ],
        )
        await _notify(conn, p.deployment_id)
    elif isinstance(event, DeploymentActivated):
        p = event.payload
        await _upsert_skillpack(conn, p.skillpack_id, event.workspace_id, p.skillpack_slug, None)
        await conn.execute(
            """UPDATE skillpacks SET active_deployment_id = $2, activation = $3
               WHERE id = $1 AND activation < $3""",
            p.skillpack_id, p.deployment_id, p.activation,
        )
        await _notify(conn, p.deployment_id)
    elif isinstance(event, DeploymentDeleted):
        await conn.execute("UPDATE deployments SET deleted = true WHERE id = $1", event.payload.deployment_id)
        await _notify(conn, event.payload.deployment_id)
    elif isinstance(event, DeploymentBuilt):
        # building → ready | failed, once; a replay or a late duplicate changes nothing.
        await conn.execute(
            "UPDATE deployments SET status = $2 WHERE id = $1 AND status = 'building'",
            event.payload.deployment_id, event.payload.status,
        )
        await _notify(conn, event.payload.deployment_id)
    elif isinstance(event, SkillpackUpdated):
        p = event.payload
        await _upsert_skillpack(conn, p.skillpack_id, event.workspace_id, p.skillpack_slug, None)
        await conn.execute(
            "UPDATE skillpacks SET visibility = $2, revision = $3 WHERE id = $1 AND revision < $3",
            p.skillpack_id, p.visibility, p.revision,
        )
        await _notify(conn, p.skillpack_id)


async def _upsert_skillpack(
    conn: asyncpg.Connection, skillpack_id: UUID, workspace_id: UUID | None, slug: str, visibility: str | None
) -> None:
    # The visibility a deployment event carries only seeds a new row: changes come with a
    # revision (skillpack_updated), so an older event never undoes a newer setting.
    await conn.execute(
        """INSERT INTO skillpacks (id, workspace_id, slug, visibility) VALUES ($1, $2, $3, coalesce($4, 'private'))
           ON CONFLICT (id) DO NOTHING""",
        skillpack_id, workspace_id, slug, visibility,
    )


async def _notify(conn: asyncpg.Connection, key: UUID) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", CATALOG_CHANNEL, str(key))


async def deployment_visible(conn: asyncpg.Connection, deployment_id: UUID, *, active: bool) -> bool:
    """Whether the catalogue has the deployment, ready (and, if ``active``, points at it)."""
    return bool(
        await conn.fetchval(
            """SELECT true FROM deployments d JOIN skillpacks s ON s.id = d.skillpack_id
               WHERE d.id = $1 AND d.status = 'ready' AND (NOT $2 OR s.active_deployment_id = d.id)""",
            deployment_id, active,
        )
    )


async def deployment_status(conn: asyncpg.Connection, deployment_id: UUID) -> str | None:
    """The catalogue's status of a deployment (``building``, ``ready``, ``failed``), if it has it."""
    return await conn.fetchval("SELECT status FROM deployments WHERE id = $1", deployment_id)


async def deployment_deleted(conn: asyncpg.Connection, deployment_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT deleted FROM deployments WHERE id = $1", deployment_id))


async def skillpack_revision(conn: asyncpg.Connection, skillpack_id: UUID) -> int | None:
    return await conn.fetchval("SELECT revision FROM skillpacks WHERE id = $1", skillpack_id)


@dataclass(frozen=True)
class ResolvedSkill:
    """A skill address resolved to the deployment a job will run."""

    owner_workspace_id: UUID
    skillpack_id: UUID
    skillpack_slug: str
    deployment_id: UUID
    version: int
    name: str
    kind: str
    entrypoint: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    timeout_seconds: int | None


@dataclass(frozen=True)
class Address:
    workspace: str | None
    skillpack: str | None
    skill: str


def parse_address(skill: str, *, skillpack: str | None) -> Address:
    """Split a skill address; ``skillpack`` (the body field or the key's default) fills a bare name."""
    parts = skill.split("/")
    if len(parts) > 3 or any(not p for p in parts):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"skill {skill!r} is not an address: use 'skill', 'skillpack/skill' or 'workspace/skillpack/skill'",
            details=[{"pointer": "/skill", "message": "malformed skill address"}],
        )
    workspace = parts[0] if len(parts) == 3 else None
    pack = parts[-2] if len(parts) >= 2 else None
    if pack is None and skillpack is not None:
        if "/" in skillpack:
            workspace, _, pack = skillpack.partition("/")
        else:
            pack = skillpack
    if not NAME.match(parts[-1]):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"skill name {parts[-1]!r} does not match ^[a-z0-9][a-z0-9_-]*$",
            details=[{"pointer": "/skill", "message": "invalid skill name"}],
        )
    return Address(workspace, pack, parts[-1])


class ResolutionCache:
    """Resolved skill addresses, kept until the catalogue changes.

    Every gateway process hears every catalogue change (the projection notifies in the
    transaction that makes it) and drops the whole cache: catalogue changes are rare, submissions
    are not, and a resolution costs three queries.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[Any, ...], ResolvedSkill] = {}

    def clear(self) -> None:
        self._entries.clear()

    async def resolve(
        self, conn: asyncpg.Connection, *, caller_workspace_id: UUID, address: Address, default_skillpack: str, version: int | None
    ) -> ResolvedSkill:
        key = (caller_workspace_id, address, default_skillpack, version)
        if (hit := self._entries.get(key)) is not None:
            return hit
        found = await resolve(
            conn, caller_workspace_id=caller_workspace_id, address=address, default_skillpack=default_skillpack, version=version
        )
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = found
        return found


async def resolve(
    conn: asyncpg.Connection,
    *,
    caller_workspace_id: UUID,
    address: Address,
    default_skillpack: str,
    version: int | None,
) -> ResolvedSkill:
    """The deployment and manifest a job for ``address`` runs; 404s name what is missing."""
    workspace_id = caller_workspace_id
    foreign = False
    if address.workspace is not None:
        row = await conn.fetchrow("SELECT id FROM workspaces WHERE slug = $1", address.workspace)
        if row is None and (ws_uuid := parse_id(address.workspace)) is not None:
            row = await conn.fetchrow("SELECT id FROM workspaces WHERE id = $1", ws_uuid)
        if row is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"workspace {address.workspace!r} not found")
        workspace_id = row["id"]
        foreign = workspace_id != caller_workspace_id
    pack_ref = address.skillpack or default_skillpack
    pack = await conn.fetchrow(
        "SELECT id, slug, visibility, active_deployment_id FROM skillpacks WHERE workspace_id = $1 AND slug = $2",
        workspace_id, pack_ref,
    )
    if pack is None and (pack_uuid := parse_id(pack_ref)) is not None:
        pack = await conn.fetchrow(
            "SELECT id, slug, visibility, active_deployment_id FROM skillpacks WHERE workspace_id = $1 AND id = $2",
            workspace_id, pack_uuid,
        )
    where = f"{address.workspace}/{pack_ref}" if address.workspace else pack_ref
    if pack is None or (foreign and pack["visibility"] != "public"):
        raise ApiError(ErrorCode.NOT_FOUND, f"skillpack {where!r} not found")
    if version is None:
        if pack["active_deployment_id"] is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"skillpack {where!r} has no active deployment")
        deployment = await conn.fetchrow(
            "SELECT id, version FROM deployments WHERE id = $1", pack["active_deployment_id"]
        )
    else:
        deployment = await conn.fetchrow(
            "SELECT id, version, status FROM deployments WHERE skillpack_id = $1 AND version = $2 AND NOT deleted",
            pack["id"], version,
        )
        if deployment is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"version {version} of skillpack {where!r} not found")
        if deployment["status"] != "ready":
            why = "is still building its requirements.txt" if deployment["status"] == "building" else "failed to build"
            raise ApiError(
                ErrorCode.CONFLICT,
                f"version {version} of skillpack {where!r} {why}; jobs run only on ready deployments",
            )
    skill = await conn.fetchrow(
        "SELECT * FROM skills WHERE deployment_id = $1 AND name = $2", deployment["id"], address.skill
    )
    if skill is None:
        raise ApiError(
            ErrorCode.NOT_FOUND,
            f"skill {address.skill!r} not found in skillpack {where!r} (version {deployment['version']})",
        )
    return ResolvedSkill(
        owner_workspace_id=workspace_id,
        skillpack_id=pack["id"],
        skillpack_slug=pack["slug"],
        deployment_id=deployment["id"],
        version=deployment["version"],
        name=skill["name"],
        kind=skill["kind"],
        entrypoint=skill["entrypoint"],
        input_schema=skill["input_schema"],
        output_schema=skill["output_schema"],
        timeout_seconds=skill["timeout_seconds"],
    )
