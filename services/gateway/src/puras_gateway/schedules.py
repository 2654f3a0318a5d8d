"""Schedules: a skill run with fixed inputs at every fire time of a cron expression.

The gateway owns what a schedule runs (skill, inputs, the key it runs as) and checks it as it
would a submit; the scheduler keeps only the timing, which it learns from ``schedule.set`` and
``schedule.deleted`` (each change of the row and its event commit together, with a revision
that only grows). The scheduler decides each fire time once and says ``schedule.fired`` with the
job's id; :func:`apply_fired` then submits that job in the same transaction that records the
event in the inbox, so each fire time starts at most one job, linked back to its schedule.

Schedules come from the API (``source = 'api'``) or from ``schedules:`` in a skill's
``skill.yaml`` (``source = 'deployment'``): those follow the skillpack's active deployment, kept
in step by :func:`sync_deployment` when the catalogue moves the pointer. They can be paused and
resumed, but are changed or removed only by a new deployment.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
import orjson
from puras_common.api import ApiError, ErrorCode
from puras_common.bus import Delivery
from puras_common.cron import Cron, CronError
from puras_common.db import fetch_one
from puras_common.events import (
    DeploymentActivated,
    DeploymentRamped,
    ScheduleDeleted,
    ScheduleFired,
    ScheduleSet,
)
from puras_common.events.schedules import ScheduleDeletedPayload, ScheduleSetPayload
from puras_common.ids import new_id, parse_id
from puras_common.outbox import UnitOfWork

from puras_gateway import catalog, fences, keys, submission
from puras_gateway.catalog import ResolvedSkill
from puras_gateway.context import Gateway
from puras_gateway.keys import Principal
from puras_gateway.requests import ScheduleIn, ScheduleUpdate

PRODUCER: Final = "gateway"
MAX_INPUT_BYTES: Final = 64 * 1024
"""A schedule's inputs ride in every job it starts: kept small enough never to be offloaded."""
UPCOMING: Final = 5
_MANIFEST_NAMESPACE: Final = uuid.UUID("5f3c1b1e-6a52-4d0e-9b8e-7d1c2a9f4e21")
TIMING: Final = ("cron", "timezone", "missed", "catch_up_limit", "paused")
"""The fields the scheduler is told about."""


# -- checking what a schedule runs


def parse_timing(cron: str, timezone: str) -> Cron:
    """The schedule's expression in its zone; 400 naming ``/cron`` or ``/timezone``."""
    try:
        return Cron.parse(cron, timezone)
    except CronError as exc:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            exc.message,
            details=[{"pointer": f"/{exc.field}", "message": exc.message}],
        ) from None


def _check_size(inputs: dict[str, Any]) -> None:
    size = len(orjson.dumps(inputs))
    if size > MAX_INPUT_BYTES:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"a schedule's inputs are {size} bytes; the limit is {MAX_INPUT_BYTES}: pass large "
            "data as a drive_path",
            details=[{"pointer": "/inputs", "message": f"at most {MAX_INPUT_BYTES} bytes"}],
        )


async def _target(
    gw: Gateway, who: Principal, *, skill: str, skillpack: str | None, inputs: dict[str, Any]
) -> tuple[ResolvedSkill, str]:
    """The skill a schedule of ``who`` would run now (404, 403 for the key's allowlist, 422 for
    inputs) and the skillpack it names, fixed now so a later key default does not move it."""
    _check_size(inputs)
    pack = skillpack or who.skillpack
    address = catalog.parse_address(skill, skillpack=pack)
    resolved = await submission.resolve(
        gw,
        caller_workspace_id=who.workspace_id,
        address=address,
        default_skillpack=pack,
        version=None,
    )
    await fences.check_allowed(gw, who, resolved)
    await submission.check_inputs(resolved, inputs)
    return resolved, pack


# -- rows and events


def _set_event(row: asyncpg.Record | dict[str, Any]) -> ScheduleSet:
    return ScheduleSet.new(
        ScheduleSetPayload(
            schedule_id=row["id"],
            cron=row["cron"],
            timezone=row["timezone"],
            missed=row["missed"],
            catch_up_limit=row["catch_up_limit"],
            paused=row["paused"],
            revision=row["revision"],
        ),
        producer=PRODUCER,
        workspace_id=row["workspace_id"],
    )


def shown(row: asyncpg.Record, *, now: datetime | None = None) -> dict[str, Any]:
    """A schedule as the API shows it, with its next fire times (none while paused)."""
    upcoming = (
        []
        if row["paused"]
        else Cron(row["cron"], row["timezone"]).upcoming(now or datetime.now(UTC), UPCOMING)
    )
    last = None
    if row["last_fire_at"] is not None:
        last = {
            "fire_at": row["last_fire_at"].isoformat(),
            "job_id": str(row["last_job_id"]) if row["last_job_id"] else None,
            "error": row["last_error"],
        }
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "skill": row["skill"],
        "skillpack": row["skillpack"],
        "inputs": row["inputs"],
        "cron": row["cron"],
        "timezone": row["timezone"],
        "missed": row["missed"],
        "catch_up_limit": row["catch_up_limit"],
        "paused": row["paused"],
        "source": row["source"],
        "deployment_id": str(row["deployment_id"]) if row["deployment_id"] else None,
        "next_fire_times": [t.isoformat() for t in upcoming],
        "fires": row["fires"],
        "last_fire": last,
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def _owned(
    conn: asyncpg.Connection | asyncpg.Pool, who: Principal, schedule_id: str, *, lock: bool = False
) -> asyncpg.Record:
    """A live schedule of the caller's workspace (locked with ``lock``); 404 otherwise."""
    parsed = parse_id(schedule_id)
    row = None
    if parsed is not None:
        row = await conn.fetchrow(
            "SELECT * FROM schedules WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL"
            + (" FOR UPDATE" if lock else ""),
            parsed,
            who.workspace_id,
        )
    if row is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"schedule {schedule_id} not found")
    return row


# -- the API's operations


async def create(gw: Gateway, who: Principal, body: ScheduleIn) -> dict[str, Any]:
    """A new schedule of the caller's workspace, checked as a submit would be."""
    parse_timing(body.cron, body.timezone)
    _, pack = await _target(gw, who, skill=body.skill, skillpack=body.skillpack, inputs=body.inputs)
    limit = body.catch_up_limit
    if limit is None:
        limit = 1 if body.missed == "catch_up" else 0
    async with gw.outbox.transaction() as uow:
        await uow.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('schedules:' || $1::text))",
            str(who.workspace_id),
        )
        count = await uow.conn.fetchval(
            """SELECT count(*) FROM schedules
               WHERE workspace_id = $1 AND source = 'api' AND deleted_at IS NULL""",
            who.workspace_id,
        )
        most = gw.settings.max_schedules_per_workspace
        if count >= most:
            raise ApiError(
                ErrorCode.CONFLICT,
                f"workspace {who.workspace_slug!r} has {count} schedules; the limit is {most}: "
                "delete one first",
            )
        row = await fetch_one(
            uow.conn,
            """INSERT INTO schedules (id, workspace_id, key_id, source, name, skill, skillpack,
                                      inputs, cron, timezone, missed, catch_up_limit, paused,
                                      revision)
               VALUES ($1, $2, $3, 'api', $4, $5, $6, $7, $8, $9, $10, $11, $12, 1)
               RETURNING *""",
            new_id(),
            who.workspace_id,
            who.key_id,
            body.name,
            body.skill,
            pack,
            body.inputs,
            body.cron.strip(),
            body.timezone,
            body.missed,
            limit,
            body.paused,
        )
        uow.emit(_set_event(row))
    return shown(row)


async def update(
    gw: Gateway, who: Principal, schedule_id: str, body: ScheduleUpdate
) -> dict[str, Any]:
    """Change a schedule; what it runs is checked again. A schedule declared in skill.yaml can
    only be paused or resumed (its deployment owns the rest)."""
    changes = body.model_dump(exclude_unset=True)
    async with gw.outbox.transaction() as uow:
        row = dict(await _owned(uow.conn, who, schedule_id, lock=True))
        if row["source"] == "deployment" and (fixed := sorted(set(changes) - {"paused"})):
            raise ApiError(
                ErrorCode.CONFLICT,
                f"schedule {schedule_id} is declared in skill.yaml of skill {row['skill']!r}: "
                "push a new deployment to change it (only paused can be set here)",
                details=[{"pointer": f"/{name}", "message": "set by skill.yaml"} for name in fixed],
            )
        merged = {**row, **{k: v for k, v in changes.items() if v is not None}}
        if "missed" in changes and "catch_up_limit" not in changes:
            merged["catch_up_limit"] = 1 if merged["missed"] == "catch_up" else 0
        if {"cron", "timezone"} & set(changes):
            parse_timing(merged["cron"], merged["timezone"])
        if {"skill", "skillpack", "inputs"} & set(changes):
            _, merged["skillpack"] = await _target(
                gw,
                who,
                skill=merged["skill"],
                skillpack=merged["skillpack"],
                inputs=merged["inputs"],
            )
        merged["revision"] = row["revision"] + 1
        updated = await fetch_one(
            uow.conn,
            """UPDATE schedules SET name = $2, skill = $3, skillpack = $4, inputs = $5, cron = $6,
                      timezone = $7, missed = $8, catch_up_limit = $9, paused = $10,
                      revision = $11, updated_at = now()
               WHERE id = $1 RETURNING *""",
            row["id"],
            merged["name"],
            merged["skill"],
            merged["skillpack"],
            merged["inputs"],
            merged["cron"].strip(),
            merged["timezone"],
            merged["missed"],
            merged["catch_up_limit"],
            merged["paused"],
            merged["revision"],
        )
        if any(updated[f] != row[f] for f in TIMING):
            uow.emit(_set_event(updated))
    return shown(updated)


async def delete(gw: Gateway, who: Principal, schedule_id: str) -> dict[str, Any]:
    """Delete a schedule made through the API; it fires no more."""
    async with gw.outbox.transaction() as uow:
        row = await _owned(uow.conn, who, schedule_id, lock=True)
        if row["source"] == "deployment":
            raise ApiError(
                ErrorCode.CONFLICT,
                f"schedule {schedule_id} is declared in skill.yaml of skill {row['skill']!r}: "
                "remove it there and push, or pause it",
            )
        await _remove(uow, row)
    return {"id": str(row["id"]), "deleted": True}


async def _remove(uow: UnitOfWork, row: asyncpg.Record) -> None:
    revision = row["revision"] + 1
    await uow.conn.execute(
        "UPDATE schedules SET deleted_at = now(), revision = $2, updated_at = now() WHERE id = $1",
        row["id"],
        revision,
    )
    uow.emit(
        ScheduleDeleted.new(
            ScheduleDeletedPayload(schedule_id=row["id"], revision=revision),
            producer=PRODUCER,
            workspace_id=row["workspace_id"],
        )
    )


async def get(gw: Gateway, who: Principal, schedule_id: str) -> dict[str, Any]:
    return shown(await _owned(gw.db, who, schedule_id))


async def page(
    gw: Gateway, who: Principal, *, before: UUID | None, limit: int
) -> tuple[list[dict[str, Any]], UUID | None]:
    """A page of the workspace's schedules, newest first, and the id to continue after."""
    rows = await gw.db.fetch(
        """SELECT * FROM schedules WHERE workspace_id = $1 AND deleted_at IS NULL
             AND ($2::uuid IS NULL OR id < $2)
           ORDER BY id DESC LIMIT $3""",
        who.workspace_id,
        before,
        limit + 1,
    )
    now = datetime.now(UTC)
    more = rows[limit - 1]["id"] if len(rows) > limit else None
    return [shown(r, now=now) for r in rows[:limit]], more


# -- schedules declared in skill.yaml


async def apply_catalog(uow: UnitOfWork, d: Delivery) -> None:
    """Fold a deployment event into the catalogue; when it moves a skillpack's pointer (and is
    still the newest), the skillpack's declared schedules follow the active deployment."""
    await catalog.apply(uow, d)
    event = d.event
    if not isinstance(event, DeploymentActivated | DeploymentRamped):
        return
    pack = await catalog.pointer(uow.conn, event.payload.skillpack_id)
    if pack is None or pack["activation"] != event.payload.activation:
        return  # a newer pointer already applied; it synced (or will sync) its own schedules
    await sync_deployment(
        uow,
        workspace_id=pack["workspace_id"],
        skillpack_id=event.payload.skillpack_id,
        skillpack_slug=pack["slug"],
        deployment_id=pack["active_deployment_id"],
    )


def manifest_schedule_id(skillpack_id: UUID, skill: str, name: str) -> UUID:
    """The same declared schedule keeps its id (and its paused state) across deployments."""
    return uuid.uuid5(_MANIFEST_NAMESPACE, f"{skillpack_id}/{skill}/{name}")


async def sync_deployment(
    uow: UnitOfWork,
    *,
    workspace_id: UUID,
    skillpack_id: UUID,
    skillpack_slug: str,
    deployment_id: UUID,
) -> None:
    """Make the skillpack's declared schedules those of its newly active deployment: new ones
    created, changed ones updated (keeping whether they are paused), dropped ones deleted."""
    wanted: dict[UUID, dict[str, Any]] = {}
    for skill in await uow.conn.fetch(
        "SELECT name, schedules FROM skills WHERE deployment_id = $1 AND schedules IS NOT NULL",
        deployment_id,
    ):
        for declared in skill["schedules"]:
            schedule_id = manifest_schedule_id(skillpack_id, skill["name"], declared["name"])
            wanted[schedule_id] = {**declared, "skill": skill["name"]}
    existing = {
        r["id"]: r
        for r in await uow.conn.fetch(
            """SELECT * FROM schedules WHERE skillpack_id = $1 AND source = 'deployment'
               ORDER BY id FOR UPDATE""",
            skillpack_id,
        )
    }
    for schedule_id, row in existing.items():
        if schedule_id not in wanted and row["deleted_at"] is None:
            await _remove(uow, row)
    for schedule_id, declared in wanted.items():
        await _declare(
            uow,
            existing.get(schedule_id),
            schedule_id=schedule_id,
            workspace_id=workspace_id,
            skillpack_id=skillpack_id,
            skillpack_slug=skillpack_slug,
            deployment_id=deployment_id,
            declared=declared,
        )


async def _declare(
    uow: UnitOfWork,
    row: asyncpg.Record | None,
    *,
    schedule_id: UUID,
    workspace_id: UUID,
    skillpack_id: UUID,
    skillpack_slug: str,
    deployment_id: UUID,
    declared: dict[str, Any],
) -> None:
    fields = {
        "name": declared["name"],
        "skill": declared["skill"],
        "inputs": declared.get("inputs") or {},
        "cron": declared["cron"],
        "timezone": declared.get("timezone", "UTC"),
        "missed": declared.get("missed", "skip"),
        "catch_up_limit": declared.get("catch_up_limit", 0),
    }
    alive = row is not None and row["deleted_at"] is None
    if alive and all(row[k] == v for k, v in fields.items()):  # type: ignore[index]
        await uow.conn.execute(
            "UPDATE schedules SET deployment_id = $2 WHERE id = $1", schedule_id, deployment_id
        )
        return
    updated = await fetch_one(
        uow.conn,
        """INSERT INTO schedules (id, workspace_id, source, skillpack_id, deployment_id, name,
                                  skill, skillpack, inputs, cron, timezone, missed,
                                  catch_up_limit, paused, revision)
           VALUES ($1, $2, 'deployment', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, false, 1)
           ON CONFLICT (id) DO UPDATE SET deployment_id = $4, name = $5, skill = $6,
               skillpack = $7, inputs = $8, cron = $9, timezone = $10, missed = $11,
               catch_up_limit = $12, revision = schedules.revision + 1, deleted_at = NULL,
               updated_at = now()
           RETURNING *""",
        schedule_id,
        workspace_id,
        skillpack_id,
        deployment_id,
        fields["name"],
        fields["skill"],
        skillpack_slug,
        fields["inputs"],
        fields["cron"],
        fields["timezone"],
        fields["missed"],
        fields["catch_up_limit"],
    )
    uow.emit(_set_event(updated))


# -- firing


async def apply_fired(gw: Gateway, uow: UnitOfWork, d: Delivery) -> None:
    """Submit the job of one fire time (under the id the scheduler chose), or record why not."""
    event = d.event
    if not isinstance(event, ScheduleFired):
        return
    p = event.payload
    row = await uow.conn.fetchrow("SELECT * FROM schedules WHERE id = $1 FOR UPDATE", p.schedule_id)
    if row is None or row["deleted_at"] is not None or row["paused"]:
        return  # changed after the scheduler decided: a deleted or paused schedule runs nothing
    try:
        await _submit(gw, uow, row, job_id=p.job_id, fire_at=p.fire_at)
    except ApiError as exc:
        await uow.conn.execute(
            """UPDATE schedules SET last_fire_at = $2, last_job_id = NULL, last_error = $3
               WHERE id = $1""",
            row["id"],
            p.fire_at,
            exc.message,
        )
        return
    await uow.conn.execute(
        """UPDATE schedules SET fires = fires + 1, last_fire_at = $2, last_job_id = $3,
                  last_error = NULL
           WHERE id = $1""",
        row["id"],
        p.fire_at,
        p.job_id,
    )


async def _submit(
    gw: Gateway, uow: UnitOfWork, row: asyncpg.Record, *, job_id: UUID, fire_at: datetime
) -> None:
    who = await _runs_as(uow.conn, row)
    address = catalog.parse_address(row["skill"], skillpack=row["skillpack"])
    skill = await submission.resolve(
        gw,
        caller_workspace_id=row["workspace_id"],
        address=address,
        default_skillpack=row["skillpack"],
        version=None,
        routing_key=str(row["id"]),  # while a deployment ramps, a schedule keeps one side
    )
    if who is not None:
        await fences.admit(gw, who, skill)
    else:
        await fences.admit_subagent(gw, workspace_id=row["workspace_id"], key_id=None)
    await submission.check_inputs(skill, row["inputs"])
    spec = submission.spec_for(skill, inputs=row["inputs"], key_id=row["key_id"])
    spec = spec.model_copy(update={"schedule_id": row["id"], "scheduled_for": fire_at})
    slug = await uow.conn.fetchval("SELECT slug FROM workspaces WHERE id = $1", row["workspace_id"])
    await submission.enqueue_in(
        uow, spec, job_id=job_id, workspace_id=row["workspace_id"], workspace_slug=slug or ""
    )


async def _runs_as(conn: asyncpg.Connection, row: asyncpg.Record) -> Principal | None:
    """The key a schedule made through the API runs as (its fences apply to each job); None
    when no key made it. A revoked key starts nothing."""
    if row["key_id"] is None:
        return None
    key = await keys.by_id(conn, row["key_id"])
    if key is None or key["revoked_at"] is not None:
        raise ApiError(
            ErrorCode.REVOKED_KEY,
            "the key that created this schedule was revoked: it starts no jobs; delete the "
            "schedule, or create it again with a live key",
        )
    return Principal(
        workspace_id=key["workspace_id"],
        workspace_slug=key["slug"],
        key_id=key["id"],
        kind=key["kind"],
        skillpack=key["skillpack"],
        allowed_skills=tuple(key["allowed_skills"]) if key["allowed_skills"] is not None else None,
        daily_cap_micros=key["daily_cap_micros"],
    )
