"""The skill catalogue read model (from ``deployment.*`` events) and skill addressing.

A skill is addressed as ``skill`` (in the key's default skillpack or the ``skillpack`` field),
``skillpack/skill`` (in the caller's workspace) or ``workspace/skillpack/skill`` (a public
skillpack of any workspace).
"""

from __future__ import annotations

import hashlib
import re
import secrets
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
    DeploymentRamped,
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
        await _upsert_skillpack(
            conn, p.skillpack_id, event.workspace_id, p.skillpack_slug, p.visibility
        )
        await conn.execute(
            """INSERT INTO deployments (id, skillpack_id, workspace_id, version, status, notes, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING""",
            p.deployment_id,
            p.skillpack_id,
            event.workspace_id,
            p.version,
            p.status,
            p.notes,
            event.occurred_at,
        )
        await conn.executemany(
            """INSERT INTO skills (deployment_id, name, kind, entrypoint, description, model,
                                   input_schema, output_schema, timeout_seconds, schedules, retries)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING""",
            [
                (
                    p.deployment_id,
                    s.name,
                    s.kind.value,
                    s.entrypoint,
                    s.description,
                    s.model,
                    s.input_schema,
                    s.output_schema,
                    s.timeout_seconds,
                    [sch.model_dump(mode="json") for sch in s.schedules] or None,
                    s.retries.model_dump(mode="json") if s.retries is not None else None,
                )
                for s in p.skills
            ],
        )
        await _notify(conn, p.deployment_id)
    elif isinstance(event, DeploymentActivated | DeploymentRamped):
        await _point(conn, event)
    elif isinstance(event, DeploymentDeleted):
        await conn.execute(
            "UPDATE deployments SET deleted = true WHERE id = $1", event.payload.deployment_id
        )
        await _notify(conn, event.payload.deployment_id)
    elif isinstance(event, DeploymentBuilt):
        # building → ready | failed, once; a replay or a late duplicate changes nothing.
        await conn.execute(
            "UPDATE deployments SET status = $2 WHERE id = $1 AND status = 'building'",
            event.payload.deployment_id,
            event.payload.status,
        )
        await _notify(conn, event.payload.deployment_id)
    elif isinstance(event, SkillpackUpdated):
        updated = event.payload
        await _upsert_skillpack(
            conn, updated.skillpack_id, event.workspace_id, updated.skillpack_slug, None
        )
        await conn.execute(
            "UPDATE skillpacks SET visibility = $2, revision = $3 WHERE id = $1 AND revision < $3",
            updated.skillpack_id,
            updated.visibility,
            updated.revision,
        )
        await _notify(conn, updated.skillpack_id)


async def _point(conn: asyncpg.Connection, event: DeploymentActivated | DeploymentRamped) -> None:
    """Where a skillpack's unpinned jobs go: one deployment, or a ramp split between two. Both
    events share the activation counter, so only the newest state is kept."""
    p = event.payload
    await _upsert_skillpack(conn, p.skillpack_id, event.workspace_id, p.skillpack_slug, None)
    active, canary, percent = p.deployment_id, None, None
    if isinstance(event, DeploymentRamped):
        ramp = event.payload
        active, canary, percent = (
            ramp.stable_deployment_id,
            ramp.deployment_id,
            ramp.traffic_percent,
        )
    await conn.execute(
        """UPDATE skillpacks SET active_deployment_id = $2, activation = $3,
                  canary_deployment_id = $4, canary_percent = $5
           WHERE id = $1 AND activation < $3""",
        p.skillpack_id,
        active,
        p.activation,
        canary,
        percent,
    )
    await _notify(conn, p.deployment_id)
    await _notify(conn, p.skillpack_id)


async def _upsert_skillpack(
    conn: asyncpg.Connection,
    skillpack_id: UUID,
    workspace_id: UUID | None,
    slug: str,
    visibility: str | None,
) -> None:
    # The visibility a deployment event carries only seeds a new row: changes come with a
    # revision (skillpack_updated), so an older event never undoes a newer setting.
    await conn.execute(
        """INSERT INTO skillpacks (id, workspace_id, slug, visibility) VALUES ($1, $2, $3, coalesce($4, 'private'))
           ON CONFLICT (id) DO NOTHING""",
        skillpack_id,
        workspace_id,
        slug,
        visibility,
    )


async def _notify(conn: asyncpg.Connection, key: UUID) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", CATALOG_CHANNEL, str(key))


async def deployment_visible(
    conn: asyncpg.Connection, deployment_id: UUID, *, active: bool
) -> bool:
    """Whether the catalogue has the deployment, ready (and, if ``active``, points at it)."""
    return bool(
        await conn.fetchval(
            """SELECT true FROM deployments d JOIN skillpacks s ON s.id = d.skillpack_id
               WHERE d.id = $1 AND d.status = 'ready' AND (NOT $2 OR s.active_deployment_id = d.id)""",
            deployment_id,
            active,
        )
    )


async def deployment_status(conn: asyncpg.Connection, deployment_id: UUID) -> str | None:
    """The catalogue's status of a deployment (``building``, ``ready``, ``failed``), if it has it."""
    status: str | None = await conn.fetchval(
        "SELECT status FROM deployments WHERE id = $1", deployment_id
    )
    return status


async def deployment_deleted(conn: asyncpg.Connection, deployment_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT deleted FROM deployments WHERE id = $1", deployment_id))


async def skillpack_revision(conn: asyncpg.Connection, skillpack_id: UUID) -> int | None:
    revision: int | None = await conn.fetchval(
        "SELECT revision FROM skillpacks WHERE id = $1", skillpack_id
    )
    return revision


async def pointer(conn: asyncpg.Connection, skillpack_id: UUID) -> asyncpg.Record | None:
    """A skillpack's workspace, slug, active deployment and the activation that set it."""
    return await conn.fetchrow(
        "SELECT workspace_id, slug, active_deployment_id, activation FROM skillpacks WHERE id = $1",
        skillpack_id,
    )


async def skillpack_activation(conn: asyncpg.Connection, skillpack_id: UUID) -> int | None:
    """The activation counter of the newest pointer the catalogue has for a skillpack."""
    activation: int | None = await conn.fetchval(
        "SELECT activation FROM skillpacks WHERE id = $1", skillpack_id
    )
    return activation


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
    input_schema: dict[str, Any] | bool | None
    output_schema: dict[str, Any] | bool | None
    timeout_seconds: int | None
    retries: dict[str, Any] | None = None
    """``retries:`` of a deterministic skill's manifest."""


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


@dataclass(frozen=True)
class Candidates:
    """What an unpinned address may run: the skill in the active deployment and, while another
    deployment of the skillpack ramps up, in that one, with the share of jobs it takes. A skill
    that only one of the two has always runs there."""

    stable: ResolvedSkill | None
    canary: ResolvedSkill | None = None
    percent: int = 0

    def pick(self, *, routing_key: str | None = None, prefer: UUID | None = None) -> ResolvedSkill:
        """The deployment one job runs: ``prefer`` when it is a candidate (a subagent stays on
        its parent's deployment), else the ramp's draw."""
        if self.canary is None or self.stable is None:
            chosen = self.canary or self.stable
            assert chosen is not None, "resolve() returns at least one candidate"
            return chosen
        for candidate in (self.stable, self.canary):
            if candidate.deployment_id == prefer:
                return candidate
        if in_ramp(self.canary.deployment_id, routing_key, self.percent):
            return self.canary
        return self.stable


def in_ramp(canary_id: UUID, routing_key: str | None, percent: int) -> bool:
    """Whether a job goes to the ramping deployment. A routing key draws by a stable hash,
    salted with the deployment (each ramp samples its own keys, and a key in at 10 % stays in at
    30 %); without one the draw is random."""
    if routing_key is None:
        bucket = secrets.randbelow(100)
    else:
        digest = hashlib.sha256(canary_id.bytes + routing_key.encode()).digest()
        bucket = int.from_bytes(digest[:8], "big") % 100
    return bucket < percent


class ResolutionCache:
    """Resolved skill addresses, kept until the catalogue changes.

    Every gateway process hears every catalogue change (the projection notifies in the
    transaction that makes it) and drops the whole cache: catalogue changes are rare, submissions
    are not, and a resolution costs three queries. What is kept are the candidates; the ramp's
    draw is made per job.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[Any, ...], Candidates] = {}

    def clear(self) -> None:
        self._entries.clear()

    async def resolve(
        self,
        conn: asyncpg.Connection,
        *,
        caller_workspace_id: UUID,
        address: Address,
        default_skillpack: str,
        version: int | None,
        routing_key: str | None = None,
        prefer: UUID | None = None,
    ) -> ResolvedSkill:
        key = (caller_workspace_id, address, default_skillpack, version)
        found = self._entries.get(key)
        if found is None:
            found = await resolve(
                conn,
                caller_workspace_id=caller_workspace_id,
                address=address,
                default_skillpack=default_skillpack,
                version=version,
            )
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = found
        return found.pick(routing_key=routing_key, prefer=prefer)


async def _skill_in(
    conn: asyncpg.Connection, deployment_id: UUID | None, name: str
) -> asyncpg.Record | None:
    if deployment_id is None:
        return None
    return await conn.fetchrow(
        """SELECT s.*, d.version FROM skills s JOIN deployments d ON d.id = s.deployment_id
           WHERE s.deployment_id = $1 AND s.name = $2""",
        deployment_id,
        name,
    )


def _resolved(workspace_id: UUID, pack: asyncpg.Record, skill: asyncpg.Record) -> ResolvedSkill:
    return ResolvedSkill(
        owner_workspace_id=workspace_id,
        skillpack_id=pack["id"],
        skillpack_slug=pack["slug"],
        deployment_id=skill["deployment_id"],
        version=skill["version"],
        name=skill["name"],
        kind=skill["kind"],
        entrypoint=skill["entrypoint"],
        input_schema=skill["input_schema"],
        output_schema=skill["output_schema"],
        timeout_seconds=skill["timeout_seconds"],
        retries=skill["retries"],
    )


async def resolve(
    conn: asyncpg.Connection,
    *,
    caller_workspace_id: UUID,
    address: Address,
    default_skillpack: str,
    version: int | None,
) -> Candidates:
    """What a job for ``address`` may run (the pinned version, or the active deployment and a
    ramping one). In the caller's own workspace, 404s name what is missing; in any other, an
    unknown workspace, skillpack, version or skill all get the one answer of :func:`_unknown`,
    so a caller learns nothing about names it may not see."""
    workspace_id = caller_workspace_id
    foreign = False
    pack_ref = address.skillpack or default_skillpack
    if address.workspace is not None:
        row = await conn.fetchrow("SELECT id FROM workspaces WHERE slug = $1", address.workspace)
        if row is None and (ws_uuid := parse_id(address.workspace)) is not None:
            row = await conn.fetchrow("SELECT id FROM workspaces WHERE id = $1", ws_uuid)
        if row is None:
            raise _unknown(address, pack_ref)
        workspace_id = row["id"]
        foreign = workspace_id != caller_workspace_id
    columns = "id, slug, visibility, active_deployment_id, canary_deployment_id, canary_percent"
    pack = await conn.fetchrow(
        f"SELECT {columns} FROM skillpacks WHERE workspace_id = $1 AND slug = $2",
        workspace_id,
        pack_ref,
    )
    if pack is None and (pack_uuid := parse_id(pack_ref)) is not None:
        pack = await conn.fetchrow(
            f"SELECT {columns} FROM skillpacks WHERE workspace_id = $1 AND id = $2",
            workspace_id,
            pack_uuid,
        )
    where = f"{address.workspace}/{pack_ref}" if address.workspace else pack_ref
    if foreign and (pack is None or pack["visibility"] != "public"):
        raise _unknown(address, pack_ref)
    if pack is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"skillpack {where!r} not found")
    if version is None:
        if pack["active_deployment_id"] is None:
            if foreign:
                raise _unknown(address, pack_ref)
            raise ApiError(ErrorCode.NOT_FOUND, f"skillpack {where!r} has no active deployment")
        deployment_id = pack["active_deployment_id"]
        stable = await _skill_in(conn, deployment_id, address.skill)
        canary = await _skill_in(conn, pack["canary_deployment_id"], address.skill)
        if stable is not None or canary is not None:
            return Candidates(
                stable=_resolved(workspace_id, pack, stable) if stable else None,
                canary=_resolved(workspace_id, pack, canary) if canary else None,
                percent=pack["canary_percent"] or 0,
            )
        version = await conn.fetchval(
            "SELECT version FROM deployments WHERE id = $1", deployment_id
        )
    else:
        deployment = await conn.fetchrow(
            "SELECT id, version, status FROM deployments WHERE skillpack_id = $1 AND version = $2 AND NOT deleted",
            pack["id"],
            version,
        )
        if deployment is None:
            if foreign:
                raise _unknown(address, pack_ref)
            raise ApiError(
                ErrorCode.NOT_FOUND, f"version {version} of skillpack {where!r} not found"
            )
        if deployment["status"] != "ready":
            why = (
                "is still building its requirements.txt"
                if deployment["status"] == "building"
                else "failed to build"
            )
            raise ApiError(
                ErrorCode.CONFLICT,
                f"version {version} of skillpack {where!r} {why}; jobs run only on ready deployments",
            )
        skill = await _skill_in(conn, deployment["id"], address.skill)
        if skill is not None:
            return Candidates(stable=_resolved(workspace_id, pack, skill))
    if foreign:
        raise _unknown(address, pack_ref)
    raise ApiError(
        ErrorCode.NOT_FOUND,
        f"skill {address.skill!r} not found in skillpack {where!r} (version {version})",
    )


def _unknown(address: Address, pack_ref: str) -> ApiError:
    """The one answer for a skill of another workspace that cannot be run: the same status,
    code, message shape and details whether the workspace, the skillpack (or its visibility),
    a deployment or the skill is what is missing."""
    return ApiError(
        ErrorCode.NOT_FOUND,
        f"skill '{address.workspace}/{pack_ref}/{address.skill}' not found",
        details=[{"pointer": "/skill", "message": "no such skill that this key may run"}],
    )


async def skill_manifest(
    conn: asyncpg.Connection | asyncpg.Pool, deployment_id: UUID, name: str
) -> asyncpg.Record | None:
    """What a running skill's subagents inherit from its manifest: entrypoint, model, timeout."""
    return await conn.fetchrow(
        "SELECT entrypoint, model, timeout_seconds FROM skills WHERE deployment_id = $1 AND name = $2",
        deployment_id,
        name,
    )


async def active_skills(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, skillpack: str
) -> tuple[asyncpg.Record, list[asyncpg.Record]] | None:
    """A skillpack of the workspace (by slug or id) and the skills of its active deployment,
    by name; None if there is no such skillpack."""
    pack = await conn.fetchrow(
        """SELECT id, slug, active_deployment_id FROM skillpacks
           WHERE workspace_id = $1 AND (slug = $2 OR id = $3)""",
        workspace_id,
        skillpack,
        parse_id(skillpack),
    )
    if pack is None:
        return None
    rows = await conn.fetch(
        """SELECT s.*, d.version FROM skills s JOIN deployments d ON d.id = s.deployment_id
           WHERE s.deployment_id = $1 ORDER BY s.name""",
        pack["active_deployment_id"],
    )
    return pack, rows
