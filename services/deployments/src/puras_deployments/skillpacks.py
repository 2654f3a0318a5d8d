"""Skillpacks: the deployable projects of a workspace, each with its versions, active pointer,
secrets and visibility. Named by slug (unique in the workspace) or by id."""

from __future__ import annotations

import re
from typing import Any, Final, Literal
from uuid import UUID

import asyncpg
from puras_common.api import ApiError, ErrorCode
from puras_common.db import fetch_one
from puras_common.events import SkillpackUpdated
from puras_common.events.platform import SkillpackUpdatedPayload
from puras_common.ids import new_id, parse_id
from puras_common.outbox import Outbox

SLUG: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEFAULT: Final = "default"

Visibility = Literal["private", "public"]


def check_ref(ref: str) -> str:
    """A skillpack reference (slug or id), or 400 naming the rule."""
    if SLUG.match(ref) or parse_id(ref) is not None:
        return ref
    raise ApiError(
        ErrorCode.INVALID_REQUEST,
        f"skillpack {ref!r} is neither a slug (^[a-z0-9][a-z0-9_-]{{0,62}}$) nor a skillpack id",
        details=[{"pointer": "/skillpack", "message": "invalid skillpack reference"}],
    )


async def find(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, ref: str, *, lock: bool = False
) -> asyncpg.Record | None:
    """The skillpack ``ref`` (slug or id) names in the workspace, if any."""
    suffix = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(
        f"SELECT * FROM skillpacks WHERE workspace_id = $1 AND slug = $2{suffix}", workspace_id, ref
    )
    if row is None and (as_id := parse_id(ref)) is not None:
        row = await conn.fetchrow(
            f"SELECT * FROM skillpacks WHERE workspace_id = $1 AND id = $2{suffix}",
            workspace_id,
            as_id,
        )
    return row


async def require(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, ref: str, *, lock: bool = False
) -> asyncpg.Record:
    """The skillpack, or 404 saying how one comes to exist."""
    row = await find(conn, workspace_id, check_ref(ref), lock=lock)
    if row is None:
        raise ApiError(
            ErrorCode.NOT_FOUND,
            f"skillpack {ref!r} not found (a skillpack is created by its first push or secret)",
        )
    return row


async def ensure(conn: asyncpg.Connection, workspace_id: UUID, ref: str) -> asyncpg.Record:
    """The skillpack locked for update, created when ``ref`` is a new slug."""
    row = await find(conn, workspace_id, check_ref(ref), lock=True)
    if row is not None:
        return row
    if not SLUG.match(ref):
        raise ApiError(ErrorCode.NOT_FOUND, f"skillpack {ref!r} not found")
    await conn.execute(
        "INSERT INTO skillpacks (id, workspace_id, slug) VALUES ($1, $2, $3) ON CONFLICT (workspace_id, slug) DO NOTHING",
        new_id(),
        workspace_id,
        ref,
    )
    return await fetch_one(
        conn,
        "SELECT * FROM skillpacks WHERE workspace_id = $1 AND slug = $2 FOR UPDATE",
        workspace_id,
        ref,
    )


def public(row: asyncpg.Record, *, active_version: int | None, deployments: int) -> dict[str, Any]:
    """The API shape of a skillpack."""
    return {
        "id": str(row["id"]),
        "slug": row["slug"],
        "visibility": row["visibility"],
        "revision": row["revision"],
        "active_deployment_id": str(row["active_deployment_id"])
        if row["active_deployment_id"]
        else None,
        "active_version": active_version,
        "ramp": {
            "deployment_id": str(row["canary_deployment_id"]),
            "traffic_percent": row["canary_percent"],
            "started_at": row["ramp_started_at"].isoformat(),
        }
        if row["canary_deployment_id"]
        else None,
        "deployments": deployments,
        "created_at": row["created_at"].isoformat(),
    }


_LIST = """
    SELECT s.*, a.version AS active_version,
           (SELECT count(*) FROM deployments d WHERE d.skillpack_id = s.id AND d.deleted_at IS NULL) AS deployment_count
    FROM skillpacks s LEFT JOIN deployments a ON a.id = s.active_deployment_id
    WHERE s.workspace_id = $1 {where} ORDER BY s.slug"""


async def listing(pool: asyncpg.Pool, workspace_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(_LIST.format(where=""), workspace_id)
    return [
        public(r, active_version=r["active_version"], deployments=r["deployment_count"])
        for r in rows
    ]


async def describe(
    pool: asyncpg.Pool | asyncpg.Connection, workspace_id: UUID, ref: str
) -> dict[str, Any]:
    pack = await require(pool, workspace_id, ref)
    row = await fetch_one(pool, _LIST.format(where="AND s.id = $2"), workspace_id, pack["id"])
    return public(row, active_version=row["active_version"], deployments=row["deployment_count"])


async def set_visibility(
    outbox: Outbox, workspace_id: UUID, ref: str, visibility: Visibility
) -> dict[str, Any]:
    """Make a skillpack private or public; a change is an event, a repeat is a no-op."""
    async with outbox.transaction() as uow:
        pack = await require(uow.conn, workspace_id, ref, lock=True)
        if pack["visibility"] != visibility:
            revision = pack["revision"] + 1
            await uow.conn.execute(
                "UPDATE skillpacks SET visibility = $2, revision = $3 WHERE id = $1",
                pack["id"],
                visibility,
                revision,
            )
            uow.emit(
                SkillpackUpdated.new(
                    SkillpackUpdatedPayload(
                        skillpack_id=pack["id"],
                        skillpack_slug=pack["slug"],
                        visibility=visibility,
                        revision=revision,
                    ),
                    producer="deployments",
                    workspace_id=workspace_id,
                )
            )
        return await describe(uow.conn, workspace_id, str(pack["id"]))
