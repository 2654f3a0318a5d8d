"""Ramped rollouts as the gateway shows them: how each version of a ramping skillpack is doing
(jobs, error rate, cost), from the jobs read model, and the wait until the catalogue routes by
the newest pointer."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from puras_gateway import catalog
from puras_gateway.context import Gateway
from puras_gateway.deployments_api import not_yet_visible, wait_catalogue

_STATS = """
SELECT j.deployment_id, j.version, count(*) AS jobs,
       count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE j.status = 'failed') AS failed,
       count(*) FILTER (WHERE j.status = 'cancelled') AS cancelled,
       coalesce(sum(c.cost_micros), 0)::bigint AS cost_micros
FROM jobs j LEFT JOIN job_costs c ON c.job_id = j.id
WHERE j.deployment_id = ANY($1) AND j.owner_workspace_id = $2 AND j.created_at >= $3
GROUP BY j.deployment_id, j.version
"""


def _shown(row: asyncpg.Record | None, deployment_id: UUID, version: int) -> dict[str, Any]:
    jobs = row["jobs"] if row else 0
    succeeded = row["succeeded"] if row else 0
    failed = row["failed"] if row else 0
    finished = succeeded + failed
    cost = row["cost_micros"] if row else 0
    return {
        "deployment_id": str(deployment_id),
        "version": version,
        "jobs": jobs,
        "succeeded": succeeded,
        "failed": failed,
        "cancelled": row["cancelled"] if row else 0,
        "error_rate": round(failed / finished, 4) if finished else None,
        "cost_micros": cost,
        "avg_cost_micros": cost // jobs if jobs else 0,
    }


async def ramp_stats(
    db: asyncpg.Pool, *, owner_workspace_id: UUID, ramp: dict[str, Any]
) -> dict[str, Any]:
    """The ramp's numbers per version since it started, over every workspace that ran them
    (``ramp`` as the deployments service describes it: both deployments, share, start)."""
    stable, canary = UUID(ramp["stable_deployment_id"]), UUID(ramp["deployment_id"])
    started = datetime.fromisoformat(ramp["started_at"])
    versions = {
        r["id"]: r["version"]
        for r in await db.fetch(
            "SELECT id, version FROM deployments WHERE id = ANY($1)", [stable, canary]
        )
    }
    rows = {
        r["deployment_id"]: r
        for r in await db.fetch(_STATS, [stable, canary], owner_workspace_id, started)
    }
    percent = ramp["traffic_percent"]
    return {
        "started_at": ramp["started_at"],
        "versions": [
            {
                **_shown(rows.get(d), d, versions.get(d, 0)),
                "traffic_percent": share,
            }
            for d, share in ((stable, 100 - percent), (canary, percent))
        ],
    }


async def wait_pointer(gw: Gateway, skillpack_id: UUID, activation: int) -> None:
    """Block until the catalogue routes the skillpack by ``activation`` or a newer pointer, so
    the next submit sees the change."""

    async def applied(conn: Any) -> bool | None:
        seen = await catalog.skillpack_activation(conn, skillpack_id)
        return True if seen is not None and seen >= activation else None

    if not await wait_catalogue(
        gw, skillpack_id, applied, timeout=gw.settings.deployment_visible_timeout
    ):
        raise not_yet_visible(f"the new traffic split of skillpack {skillpack_id}")
