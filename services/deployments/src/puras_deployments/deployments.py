"""Deployments: versions of a skillpack, their build state and the active pointer. Each change
and the event describing it commit together.

Rules: versions count up per skillpack; only a ``ready`` deployment is activated; activating is
a rolling switch (jobs keep the deployment they were submitted to), so a rollback is activating
an older one; the active deployment cannot be deleted. A push with ``activate`` whose build is
still running is activated when the build succeeds, unless another deployment was activated
in between (the later choice wins).

Ramps: activating with a ``traffic_percent`` below 100 makes the deployment the skillpack's
canary, which takes that share of the unpinned jobs while the active one keeps the rest (the
gateway splits them). ``promote`` makes the canary the active one; ``rollback`` takes a canary
out of traffic, or, without a ramp, returns to the version active before. Ramps and activations
share one counter, so the gateway keeps only the newest state. A ramping deployment cannot be
deleted.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Literal
from uuid import UUID

import asyncpg
from puras_common.api import ApiError, ErrorCode
from puras_common.db import fetch_one
from puras_common.envelope import Event
from puras_common.events import (
    DeploymentActivated,
    DeploymentBuilt,
    DeploymentCreated,
    DeploymentDeleted,
    DeploymentRamped,
    SkillManifest,
)
from puras_common.events.platform import (
    DeploymentActivatedPayload,
    DeploymentBuiltPayload,
    DeploymentCreatedPayload,
    DeploymentDeletedPayload,
    DeploymentRampedPayload,
)
from puras_common.ids import new_id
from puras_common.outbox import Outbox, UnitOfWork

from puras_deployments import skillpacks
from puras_deployments.store import BundleStore

PRODUCER: Final = "deployments"
MAX_PAGE: Final = 200


def requirements_sha256(text: str) -> str:
    """The build key of a requirements.txt: its exact bytes."""
    return hashlib.sha256(text.encode()).hexdigest()


async def create(
    outbox: Outbox,
    store: BundleStore,
    *,
    workspace_id: UUID,
    skillpack: str,
    notes: str,
    activate: bool,
    skills: list[SkillManifest],
    requirements: str | None,
    bundle_sha256: str,
    bundle_bytes: int,
) -> dict[str, Any]:
    """A new version of ``skillpack`` (created on first push): ``ready`` at once, or ``building``
    while its requirements.txt is built; activated now or when ready, if asked."""
    async with outbox.transaction() as uow:
        # Locks in one order everywhere, build row before skillpack row (see settle).
        sha = requirements_sha256(requirements) if requirements is not None else None
        status, build_log = (
            ("ready", "")
            if sha is None
            else await _claim_build(uow.conn, store, sha, requirements or "")
        )
        pack = await skillpacks.ensure(uow.conn, workspace_id, skillpack)
        version = pack["next_version"]
        deployment_id = new_id()
        await uow.conn.execute(
            """INSERT INTO deployments (id, skillpack_id, workspace_id, version, status, notes, bundle_sha256,
                                        bundle_bytes, has_requirements, skills, requirements_sha256,
                                        activate_when_ready, build_log, built_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                       CASE WHEN $5 = 'ready' THEN now() END)""",
            deployment_id,
            pack["id"],
            workspace_id,
            version,
            status,
            notes,
            bundle_sha256,
            bundle_bytes,
            sha is not None,
            [s.model_dump(mode="json") for s in skills],
            sha,
            activate and status == "building",
            build_log,
        )
        await uow.conn.execute(
            "UPDATE skillpacks SET next_version = next_version + 1 WHERE id = $1", pack["id"]
        )
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
            producer=PRODUCER,
            workspace_id=workspace_id,
        )
        uow.emit(created)
        if activate and status == "ready":
            await _activate(uow, pack, deployment_id, version, caused_by=created)
        return await _describe(uow.conn, workspace_id, deployment_id, with_log=True)


async def _claim_build(
    conn: asyncpg.Connection, store: BundleStore, sha: str, requirements: str
) -> tuple[str, str]:
    """Status and build log of a new deployment with this requirements.txt: ``ready`` when an
    earlier build of the same file is, else ``building`` (starting the build if none runs)."""
    build = await conn.fetchrow(
        "SELECT * FROM builds WHERE requirements_sha256 = $1 FOR UPDATE", sha
    )
    if (
        build is not None
        and build["status"] == "ready"
        and await store.built_wheelhouse(sha) is not None
    ):
        when = build["finished_at"].isoformat() if build["finished_at"] else "earlier"
        return (
            "ready",
            f"requirements.txt {sha[:12]} was already built ({when}); reusing its wheels.\n",
        )
    if build is None:
        await conn.execute(
            "INSERT INTO builds (requirements_sha256, requirements, status) VALUES ($1, $2, 'building')",
            sha,
            requirements,
        )
    elif (
        build["status"] != "building"
    ):  # failed before (maybe transiently), or its wheels are gone: again
        await conn.execute(
            """UPDATE builds SET status = 'building', log = '', error = NULL, lease_owner = NULL,
                                 lease_expires_at = NULL, created_at = now(), finished_at = NULL
               WHERE requirements_sha256 = $1""",
            sha,
        )
    return "building", ""


async def _activate(
    uow: UnitOfWork,
    pack: asyncpg.Record,
    deployment_id: UUID,
    version: int,
    *,
    caused_by: Event | None = None,
    reason: Literal["activate", "promote", "rollback"] = "activate",
) -> bool:
    """Point the skillpack at the deployment for all of its traffic, ending any ramp; False when
    nothing changed."""
    # Whatever was waiting to be activated when its build finishes is superseded by this choice.
    await uow.conn.execute(
        "UPDATE deployments SET activate_when_ready = false WHERE skillpack_id = $2 AND activate_when_ready AND version <= $1",
        version,
        pack["id"],
    )
    if pack["active_deployment_id"] == deployment_id and pack["canary_deployment_id"] is None:
        return False
    activation = pack["activation"] + 1
    await uow.conn.execute(
        """UPDATE skillpacks SET active_deployment_id = $2, activation = $3,
                  canary_deployment_id = NULL, canary_percent = NULL, ramp_started_at = NULL,
                  previous_deployment_id = CASE WHEN active_deployment_id IS DISTINCT FROM $2
                                                THEN active_deployment_id ELSE previous_deployment_id END
           WHERE id = $1""",
        pack["id"],
        deployment_id,
        activation,
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
                reason=reason,
            ),
            producer=PRODUCER,
            workspace_id=pack["workspace_id"],
            caused_by=caused_by,
        )
    )
    return True


async def _owned(
    conn: asyncpg.Connection, workspace_id: UUID, deployment_id: UUID
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM deployments WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
        deployment_id,
        workspace_id,
    )
    if row is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"deployment {deployment_id} not found")
    return row


async def _ready_for_traffic(
    conn: asyncpg.Connection, workspace_id: UUID, deployment_id: UUID
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """The deployment and its skillpack (locked), or 409 when it is not ready to take jobs."""
    row = await _owned(conn, workspace_id, deployment_id)
    pack = await fetch_one(
        conn, "SELECT * FROM skillpacks WHERE id = $1 FOR UPDATE", row["skillpack_id"]
    )
    if row["status"] != "ready":
        why = (
            "is still building its requirements.txt"
            if row["status"] == "building"
            else "failed to build"
        )
        raise ApiError(
            ErrorCode.CONFLICT,
            f"deployment {deployment_id} (version {row['version']}) {why}; only a ready deployment can be activated",
        )
    return row, pack


async def activate(
    outbox: Outbox, *, workspace_id: UUID, deployment_id: UUID, traffic_percent: int | None = None
) -> dict[str, Any]:
    """Make a ready deployment the active one of its skillpack (an older one: a rollback), or,
    with a ``traffic_percent`` below 100, ramp it up beside the active one."""
    if traffic_percent is not None and traffic_percent < 100:
        return await _ramp(
            outbox, workspace_id=workspace_id, deployment_id=deployment_id, percent=traffic_percent
        )
    async with outbox.transaction() as uow:
        row, pack = await _ready_for_traffic(uow.conn, workspace_id, deployment_id)
        await uow.conn.execute(
            "UPDATE deployments SET activate_when_ready = false WHERE skillpack_id = $1 AND activate_when_ready",
            pack["id"],
        )
        await _activate(uow, pack, deployment_id, row["version"])
        return await _describe(uow.conn, workspace_id, deployment_id, with_log=False)


async def _ramp(
    outbox: Outbox, *, workspace_id: UUID, deployment_id: UUID, percent: int
) -> dict[str, Any]:
    """Send ``percent`` % of the skillpack's unpinned jobs to the deployment, the rest to the
    active one; a ramp in progress is replaced (the later choice wins)."""
    async with outbox.transaction() as uow:
        row, pack = await _ready_for_traffic(uow.conn, workspace_id, deployment_id)
        stable = pack["active_deployment_id"]
        if stable is None or stable == deployment_id:
            what = (
                "is already the active one" if stable else "has no active deployment to share with"
            )
            raise ApiError(
                ErrorCode.CONFLICT,
                f"cannot ramp version {row['version']}: skillpack {pack['slug']!r} {what}; "
                "activate it without traffic_percent",
                details=[{"pointer": "/traffic_percent", "message": "nothing to ramp against"}],
            )
        await uow.conn.execute(
            "UPDATE deployments SET activate_when_ready = false WHERE skillpack_id = $1 AND activate_when_ready",
            pack["id"],
        )
        if pack["canary_deployment_id"] == deployment_id and pack["canary_percent"] == percent:
            return await _describe(uow.conn, workspace_id, deployment_id, with_log=False)
        activation = pack["activation"] + 1
        await uow.conn.execute(
            """UPDATE skillpacks SET canary_deployment_id = $2, canary_percent = $3, activation = $4,
                      ramp_started_at = CASE WHEN canary_deployment_id = $2 THEN ramp_started_at
                                             ELSE now() END
               WHERE id = $1""",
            pack["id"],
            deployment_id,
            percent,
            activation,
        )
        stable_version = await uow.conn.fetchval(
            "SELECT version FROM deployments WHERE id = $1", stable
        )
        uow.emit(
            DeploymentRamped.new(
                DeploymentRampedPayload(
                    skillpack_id=pack["id"],
                    skillpack_slug=pack["slug"],
                    deployment_id=deployment_id,
                    version=row["version"],
                    stable_deployment_id=stable,
                    stable_version=stable_version,
                    traffic_percent=percent,
                    activation=activation,
                ),
                producer=PRODUCER,
                workspace_id=workspace_id,
            )
        )
        return await _describe(uow.conn, workspace_id, deployment_id, with_log=False)


async def promote(outbox: Outbox, *, workspace_id: UUID, deployment_id: UUID) -> dict[str, Any]:
    """The ramping deployment takes all of its skillpack's traffic (becomes the active one)."""
    async with outbox.transaction() as uow:
        row, pack = await _ready_for_traffic(uow.conn, workspace_id, deployment_id)
        if pack["canary_deployment_id"] != deployment_id:
            raise ApiError(
                ErrorCode.CONFLICT,
                f"version {row['version']} of skillpack {pack['slug']!r} is not ramping up; "
                "only a ramping deployment is promoted (activate it with traffic_percent first)",
            )
        await _activate(uow, pack, deployment_id, row["version"], reason="promote")
        return await _describe(uow.conn, workspace_id, deployment_id, with_log=False)


async def rollback(outbox: Outbox, *, workspace_id: UUID, deployment_id: UUID) -> dict[str, Any]:
    """Take the deployment out of traffic at once: a ramping one hands its share back to the
    active one; the active one (with no ramp) hands everything back to the version active
    before it. Answers with the deployment that now takes the traffic."""
    async with outbox.transaction() as uow:
        row = await _owned(uow.conn, workspace_id, deployment_id)
        pack = await fetch_one(
            uow.conn, "SELECT * FROM skillpacks WHERE id = $1 FOR UPDATE", row["skillpack_id"]
        )
        if pack["canary_deployment_id"] == deployment_id:
            target = pack["active_deployment_id"]
        elif pack["active_deployment_id"] == deployment_id and pack["canary_deployment_id"]:
            raise ApiError(
                ErrorCode.CONFLICT,
                f"version {row['version']} is the active version of skillpack {pack['slug']!r} and "
                "another version is ramping up beside it; roll that one back or promote it first",
            )
        elif pack["active_deployment_id"] == deployment_id:
            target = pack["previous_deployment_id"]
            gone = target is None or await uow.conn.fetchval(
                "SELECT deleted_at IS NOT NULL OR status <> 'ready' FROM deployments WHERE id = $1",
                target,
            )
            if gone:
                raise ApiError(
                    ErrorCode.CONFLICT,
                    f"skillpack {pack['slug']!r} has no earlier version to roll back to "
                    "(none was active before, or it was deleted); activate one by id",
                )
        else:
            raise ApiError(
                ErrorCode.CONFLICT,
                f"version {row['version']} of skillpack {pack['slug']!r} takes no traffic; "
                "only the active or a ramping version can be rolled back",
            )
        version = await uow.conn.fetchval("SELECT version FROM deployments WHERE id = $1", target)
        await _activate(uow, pack, target, version, reason="rollback")
        return await _describe(uow.conn, workspace_id, target, with_log=False)


async def delete(outbox: Outbox, *, workspace_id: UUID, deployment_id: UUID) -> dict[str, Any]:
    """Delete a deployment that is not the active one. Jobs already submitted to it still run."""
    async with outbox.transaction() as uow:
        row = await _owned(uow.conn, workspace_id, deployment_id)
        pack = await fetch_one(
            uow.conn, "SELECT * FROM skillpacks WHERE id = $1 FOR UPDATE", row["skillpack_id"]
        )
        if pack["active_deployment_id"] == deployment_id:
            raise ApiError(
                ErrorCode.CONFLICT,
                f"deployment {deployment_id} is version {row['version']}, the active deployment of skillpack "
                f"{pack['slug']!r}; activate another version first",
            )
        if pack["canary_deployment_id"] == deployment_id:
            raise ApiError(
                ErrorCode.CONFLICT,
                f"deployment {deployment_id} is version {row['version']}, ramping up in skillpack "
                f"{pack['slug']!r}; roll it back or promote it first",
            )
        await uow.conn.execute(
            "UPDATE deployments SET deleted_at = now(), activate_when_ready = false WHERE id = $1",
            deployment_id,
        )
        uow.emit(
            DeploymentDeleted.new(
                DeploymentDeletedPayload(deployment_id=deployment_id, skillpack_id=pack["id"]),
                producer=PRODUCER,
                workspace_id=workspace_id,
            )
        )
    return {
        "id": str(deployment_id),
        "deleted": True,
        "version": row["version"],
        "skillpack": pack["slug"],
    }


async def settle(uow: UnitOfWork, *, sha: str, status: str, log: str, error: str | None) -> int:
    """A build ended: every deployment waiting for it becomes ready (activated if its push asked
    and nothing was activated since) or failed. The caller holds the build's row lock."""
    waiting = await uow.conn.fetch(
        """UPDATE deployments SET status = $2, build_log = $3, error = $4, built_at = now()
           WHERE requirements_sha256 = $1 AND status = 'building' AND deleted_at IS NULL
           RETURNING id, skillpack_id, workspace_id, version, activate_when_ready""",
        sha,
        status,
        log,
        error,
    )
    for row in sorted(waiting, key=lambda r: (r["skillpack_id"], r["version"])):
        built = DeploymentBuilt.new(
            DeploymentBuiltPayload(
                deployment_id=row["id"],
                skillpack_id=row["skillpack_id"],
                status=status,
                requirements_sha256=sha,
                error=error,
            ),
            producer=PRODUCER,
            workspace_id=row["workspace_id"],
        )
        uow.emit(built)
        if status == "ready" and row["activate_when_ready"]:
            pack = await fetch_one(
                uow.conn, "SELECT * FROM skillpacks WHERE id = $1 FOR UPDATE", row["skillpack_id"]
            )
            still = await uow.conn.fetchval(
                "SELECT activate_when_ready FROM deployments WHERE id = $1", row["id"]
            )
            if still:
                await _activate(uow, pack, row["id"], row["version"], caused_by=built)
    return len(waiting)


_COLUMNS = """d.id, d.version, d.status, d.notes, d.bundle_sha256, d.bundle_bytes, d.requirements_sha256,
              d.skills, d.created_at, d.built_at, d.error, d.activate_when_ready,
              s.slug AS skillpack, s.id AS skillpack_id, s.active_deployment_id,
              s.canary_deployment_id, s.canary_percent, s.activation, s.ramp_started_at"""


def traffic_percent(row: asyncpg.Record) -> int:
    """The share of its skillpack's unpinned jobs a deployment receives now."""
    canary, percent = row["canary_deployment_id"], row["canary_percent"] or 0
    if row["id"] == canary:
        return int(percent)
    if row["id"] == row["active_deployment_id"]:
        return 100 - int(percent) if canary is not None else 100
    return 0


def _public(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "skillpack": row["skillpack"],
        "skillpack_id": str(row["skillpack_id"]),
        "version": row["version"],
        "status": row["status"],
        "active": row["active_deployment_id"] == row["id"],
        "traffic_percent": traffic_percent(row),
        "activate_when_ready": row["activate_when_ready"],
        "notes": row["notes"],
        "bundle_sha256": row["bundle_sha256"],
        "bundle_bytes": row["bundle_bytes"],
        "requirements_sha256": row["requirements_sha256"],
        "skills": [
            {
                "name": s["name"],
                "kind": s["kind"],
                "entrypoint": s["entrypoint"],
                "description": s.get("description", ""),
                "network": s.get("network", True),
                "model": s.get("model"),
                "input_schema": s.get("input_schema"),
                "output_schema": s.get("output_schema"),
            }
            for s in row["skills"]
        ],
        "error": row["error"],
        "created_at": row["created_at"].isoformat(),
        "built_at": row["built_at"].isoformat() if row["built_at"] else None,
    }


async def _describe(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: UUID,
    deployment_id: UUID,
    *,
    with_log: bool,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""SELECT {_COLUMNS}, d.build_log, b.log AS live_log
            FROM deployments d JOIN skillpacks s ON s.id = d.skillpack_id
            LEFT JOIN builds b ON b.requirements_sha256 = d.requirements_sha256
            WHERE d.id = $1 AND d.workspace_id = $2 AND d.deleted_at IS NULL""",
        deployment_id,
        workspace_id,
    )
    if row is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"deployment {deployment_id} not found")
    body = _public(row)
    body["activation"] = row["activation"]
    if row["canary_deployment_id"] is not None:
        body["ramp"] = {
            "stable_deployment_id": str(row["active_deployment_id"]),
            "deployment_id": str(row["canary_deployment_id"]),
            "traffic_percent": row["canary_percent"],
            "started_at": row["ramp_started_at"].isoformat(),
        }
    if with_log:
        # While building, the log is the build's own, growing as pip works.
        body["build_log"] = (
            (row["live_log"] or "") if row["status"] == "building" else row["build_log"]
        )
    return body


async def describe(
    pool: asyncpg.Pool, *, workspace_id: UUID, deployment_id: UUID
) -> dict[str, Any]:
    """One deployment with its status and build log."""
    return await _describe(pool, workspace_id, deployment_id, with_log=True)


async def listing(
    pool: asyncpg.Pool, *, workspace_id: UUID, skillpack: str, limit: int, cursor: int | None
) -> dict[str, Any]:
    """A page of a skillpack's deployments, newest first; ``cursor`` is the last version seen."""
    pack = await skillpacks.find(pool, workspace_id, skillpacks.check_ref(skillpack))
    if pack is None:
        if skillpack == skillpacks.DEFAULT:
            return {"data": [], "next_cursor": None}
        pack = await skillpacks.require(pool, workspace_id, skillpack)
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM deployments d JOIN skillpacks s ON s.id = d.skillpack_id
            WHERE d.skillpack_id = $1 AND d.deleted_at IS NULL AND ($2::int IS NULL OR d.version < $2)
            ORDER BY d.version DESC LIMIT $3""",
        pack["id"],
        cursor,
        limit + 1,
    )
    page = [_public(r) for r in rows[:limit]]
    next_cursor = str(rows[limit - 1]["version"]) if len(rows) > limit else None
    return {"data": page, "next_cursor": next_cursor}


async def get(conn: asyncpg.Connection | asyncpg.Pool, deployment_id: UUID) -> asyncpg.Record:
    """Any deployment by id, deleted or not (runners still run jobs submitted before a delete)."""
    row = await conn.fetchrow("SELECT * FROM deployments WHERE id = $1", deployment_id)
    if row is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"deployment {deployment_id} not found")
    return row
