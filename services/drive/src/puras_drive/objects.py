"""Object metadata and origin: the drive's projection of its own events.

Every write or delete is recorded as an event in the outbox and folded into ``objects`` in the
same transaction, so a caller that just wrote a file can read its origin at once. The
``drive-objects`` projection folds the same events from the PLATFORM stream; each row keeps the
``(time, event id)`` of the event that set it, so applying an event twice, late, or during a
rebuild from the stream always ends in the same row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from nats.js import JetStreamContext
from puras_common.bus import Delivery
from puras_common.events import DriveObjectsDeleted, DriveObjectWritten, ObjectOrigin
from puras_common.events.drive import (
    MAX_PATHS_PER_EVENT,
    ObjectsDeletedPayload,
    ObjectWrittenPayload,
)
from puras_common.logging import get_logger
from puras_common.outbox import Outbox, UnitOfWork
from puras_common.publishing import Outgoing, publish_acknowledged

PRODUCER = "drive"
PUBLISH_TIMEOUT = 5.0
"""Seconds a recording waits for its events' acks before leaving them to the relay."""

log = get_logger("puras_drive.objects")

_UPSERT_WRITTEN = """
INSERT INTO objects (workspace_id, path, bytes, content_type, updated_at, origin_job_id, origin_skill,
                     origin_tool, created_at, version_at, version_id, deleted_at, source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $5, $5, $9, NULL, $10)
ON CONFLICT (workspace_id, path) DO UPDATE SET
    bytes = EXCLUDED.bytes, content_type = EXCLUDED.content_type, updated_at = EXCLUDED.updated_at,
    origin_job_id = EXCLUDED.origin_job_id, origin_skill = EXCLUDED.origin_skill,
    origin_tool = EXCLUDED.origin_tool, created_at = EXCLUDED.created_at,
    version_at = EXCLUDED.version_at, version_id = EXCLUDED.version_id, deleted_at = NULL,
    source = EXCLUDED.source
WHERE (objects.version_at, objects.version_id) < (EXCLUDED.version_at, EXCLUDED.version_id)
"""

_UPSERT_DELETED = """
INSERT INTO objects (workspace_id, path, bytes, content_type, updated_at, created_at, version_at,
                     version_id, deleted_at)
SELECT $1, p, 0, '', $3, $3, $3, $4, $3 FROM unnest($2::text[]) AS p
ON CONFLICT (workspace_id, path) DO UPDATE SET
    deleted_at = EXCLUDED.deleted_at, version_at = EXCLUDED.version_at, version_id = EXCLUDED.version_id,
    bytes = 0, content_type = '', updated_at = EXCLUDED.updated_at, created_at = EXCLUDED.created_at,
    origin_job_id = NULL, origin_skill = NULL, origin_tool = NULL, source = 'upload'
WHERE (objects.version_at, objects.version_id) < (EXCLUDED.version_at, EXCLUDED.version_id)
"""


@dataclass(frozen=True)
class Origin:
    """Who wrote a file: ``{job_id, skill_name, tool, created_at}``, all ``None`` for uploads."""

    job_id: UUID | None = None
    skill_name: str | None = None
    tool: str | None = None
    created_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id) if self.job_id else None,
            "skill_name": self.skill_name,
            "tool": self.tool,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def written_event(
    workspace_id: UUID,
    path: str,
    *,
    size: int,
    content_type: str,
    written_at: datetime,
    origin: ObjectOrigin | None,
    source: str,
) -> DriveObjectWritten:
    payload = ObjectWrittenPayload(
        path=path,
        bytes=size,
        content_type=content_type,
        written_at=written_at,
        origin=origin,
        source=source,
    )
    return DriveObjectWritten.new(
        payload,
        producer=PRODUCER,
        workspace_id=workspace_id,
        job_id=origin.job_id if origin else None,
    )


def deleted_events(
    workspace_id: UUID, paths: Sequence[str], *, deleted_at: datetime
) -> list[DriveObjectsDeleted]:
    return [
        DriveObjectsDeleted.new(
            ObjectsDeletedPayload(
                paths=tuple(paths[i : i + MAX_PATHS_PER_EVENT]), deleted_at=deleted_at
            ),
            producer=PRODUCER,
            workspace_id=workspace_id,
        )
        for i in range(0, len(paths), MAX_PATHS_PER_EVENT)
    ]


async def fold(conn: asyncpg.Connection, event: DriveObjectWritten | DriveObjectsDeleted) -> None:
    """Apply one drive event to ``objects`` (idempotent, order-insensitive)."""
    if isinstance(event, DriveObjectWritten):
        p = event.payload
        o = p.origin
        await conn.execute(
            _UPSERT_WRITTEN,
            event.workspace_id,
            p.path,
            p.bytes,
            p.content_type,
            p.written_at,
            o.job_id if o else None,
            o.skill_name if o else None,
            o.tool if o else None,
            event.id,
            p.source,
        )
    else:
        await conn.execute(
            _UPSERT_DELETED,
            event.workspace_id,
            list(event.payload.paths),
            event.payload.deleted_at,
            event.id,
        )


async def apply(uow: UnitOfWork, delivery: Delivery) -> None:
    """The ``drive-objects`` projection."""
    if isinstance(delivery.event, DriveObjectWritten | DriveObjectsDeleted):
        await fold(uow.conn, delivery.event)


class Metadata:
    """Records writes and deletes (state and event together) and answers origin lookups.

    With ``js``, a recording returns only once its events are on the stream: a runner reports a
    job's outcome after its files are recorded, so the job's terminal event comes after its
    ``drive.object.written`` events. The relay publishes the same rows again later; the
    ``Nats-Msg-Id`` (the event id) makes that a duplicate the server drops.
    """

    def __init__(self, outbox: Outbox, *, js: JetStreamContext | None = None) -> None:
        self.outbox = outbox
        self.js = js

    async def record(self, events: Sequence[DriveObjectWritten | DriveObjectsDeleted]) -> None:
        if not events:
            return
        async with self.outbox.transaction() as uow:
            for event in events:
                await fold(uow.conn, event)
            uow.emit(*events)
        if self.js is not None:
            try:
                await publish_acknowledged(
                    self.js,
                    [Outgoing.of(e) for e in events],
                    timeout=PUBLISH_TIMEOUT,
                    give_up_after=PUBLISH_TIMEOUT,
                )
            except TimeoutError as exc:  # committed: the relay publishes it when it can
                log.warning("drive events left to the relay", error=str(exc))

    async def content_types(self, workspace_id: UUID, paths: Sequence[str]) -> dict[str, str]:
        rows = await self.outbox.pool.fetch(
            """SELECT path, content_type FROM objects
               WHERE workspace_id = $1 AND path = ANY($2::text[]) AND deleted_at IS NULL""",
            workspace_id,
            list(paths),
        )
        return {r["path"]: r["content_type"] for r in rows}

    async def usage(self, workspace_id: UUID) -> tuple[int, int]:
        """The bytes and the number of files a workspace's drive holds."""
        row = await self.outbox.pool.fetchrow(
            """SELECT coalesce(sum(bytes), 0)::bigint AS bytes, count(*) AS files FROM objects
               WHERE workspace_id = $1 AND deleted_at IS NULL""",
            workspace_id,
        )
        assert row is not None
        return int(row["bytes"]), int(row["files"])

    async def written_by(
        self, workspace_id: UUID, job_ids: Sequence[UUID], paths: Sequence[str]
    ) -> set[str]:
        """Which of ``paths`` hold a file that one of ``job_ids`` wrote (its recorded origin)."""
        rows = await self.outbox.pool.fetch(
            """SELECT path FROM objects
               WHERE workspace_id = $1 AND origin_job_id = ANY($2::uuid[])
                 AND path = ANY($3::text[]) AND deleted_at IS NULL""",
            workspace_id,
            list(job_ids),
            list(paths),
        )
        return {r["path"] for r in rows}

    async def written_by_tools(
        self, workspace_id: UUID, job_id: UUID
    ) -> dict[str, tuple[int, datetime]]:
        """The files a tool of ``job_id`` wrote, as recorded: ``{path: (bytes, recorded at)}``."""
        rows = await self.outbox.pool.fetch(
            """SELECT path, bytes, updated_at FROM objects
               WHERE workspace_id = $1 AND origin_job_id = $2 AND origin_tool IS NOT NULL AND deleted_at IS NULL""",
            workspace_id,
            job_id,
        )
        return {r["path"]: (r["bytes"], r["updated_at"]) for r in rows}

    async def origin(self, workspace_id: UUID, path: str) -> Origin:
        row = await self.outbox.pool.fetchrow(
            """SELECT origin_job_id, origin_skill, origin_tool, created_at FROM objects
               WHERE workspace_id = $1 AND path = $2 AND deleted_at IS NULL""",
            workspace_id,
            path,
        )
        if row is None or row["origin_job_id"] is None:
            return Origin()
        return Origin(
            row["origin_job_id"], row["origin_skill"], row["origin_tool"], row["created_at"]
        )
