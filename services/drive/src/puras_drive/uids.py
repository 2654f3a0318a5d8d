"""A host uid per workspace: its jobs run as it, its drive folder belongs to it (mode 0700).

One job can then neither read another workspace's files, even by path, nor its processes'
``/proc`` entries: they belong to another uid. The drive owns the assignment (the workspace's
folder is its to make) and keeps it in PostgreSQL, so it is the same after a restart and on
every host; runners learn it with the workspace's mount. The gid is the uid.

Uids come from ``[base, base + count)``, lowest free first, and are never reused.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

MAX_ASSIGN_TRIES = 16
"""Concurrent assignments may pick the same free uid; the loser picks again."""


class UidRangeExhausted(RuntimeError):
    """Every uid of the configured range belongs to a workspace already."""


class WorkspaceUids:
    """The workspace → uid table (``workspace_uids``), cached: an assignment never changes."""

    def __init__(self, pool: asyncpg.Pool, *, base: int, count: int) -> None:
        if base < 1000 or count < 1 or base + count > 2**31 - 1:
            raise ValueError(
                f"the job uid range {base}..{base + count - 1} must lie within 1000..2147483646 "
                "(set PURAS_SANDBOX_UID_BASE and PURAS_SANDBOX_UID_COUNT)"
            )
        self.pool = pool
        self.base = base
        self.count = count
        self._known: dict[UUID, int] = {}

    async def load(self) -> None:
        """Read every assignment, so :meth:`known` answers without a query."""
        rows = await self.pool.fetch("SELECT workspace_id, uid FROM workspace_uids")
        self._known.update({r["workspace_id"]: r["uid"] for r in rows})

    def known(self, workspace_id: UUID) -> int | None:
        """The workspace's uid if this process has seen it assigned."""
        return self._known.get(workspace_id)

    async def uid_for(self, workspace_id: UUID) -> int:
        """The workspace's uid, assigned now if it has none; :class:`UidRangeExhausted` when
        the range is used up."""
        if (uid := self._known.get(workspace_id)) is not None:
            return uid
        for _ in range(MAX_ASSIGN_TRIES):
            try:
                uid = await self.pool.fetchval(
                    """
                    WITH mine AS (SELECT uid FROM workspace_uids WHERE workspace_id = $1),
                    fresh AS (
                        INSERT INTO workspace_uids (workspace_id, uid)
                        SELECT $1, s FROM generate_series($2::int, $2::int + $3::int - 1) AS s
                        WHERE NOT EXISTS (SELECT 1 FROM mine)
                          AND NOT EXISTS (SELECT 1 FROM workspace_uids w WHERE w.uid = s)
                        ORDER BY s LIMIT 1
                        ON CONFLICT (workspace_id) DO NOTHING
                        RETURNING uid
                    )
                    SELECT uid FROM mine UNION ALL SELECT uid FROM fresh
                    """,
                    workspace_id,
                    self.base,
                    self.count,
                )
            except asyncpg.UniqueViolationError:
                continue  # another workspace took that uid (or this one got one) meanwhile
            if uid is None:
                # Assigned concurrently under this workspace (ON CONFLICT), or the range is full.
                uid = await self.pool.fetchval(
                    "SELECT uid FROM workspace_uids WHERE workspace_id = $1", workspace_id
                )
                if uid is None:
                    raise UidRangeExhausted(
                        f"all {self.count} job uids ({self.base}..{self.base + self.count - 1}) "
                        "belong to workspaces already: widen PURAS_SANDBOX_UID_COUNT"
                    )
            self._known[workspace_id] = uid
            return int(uid)
        raise RuntimeError(
            f"could not assign a uid to workspace {workspace_id}: too much contention"
        )
