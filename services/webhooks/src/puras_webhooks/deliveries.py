"""The delivery log of an endpoint, and sending one delivery again on request."""

from __future__ import annotations

from typing import Any, Final

import asyncpg
from puras_common.api import ApiError, ErrorCode
from puras_common.db import fetch_one
from puras_common.ids import parse_id
from puras_common.webhooks import WebhookReply, WebhookRequest

from puras_webhooks.endpoints import Registry

MAX_ATTEMPTS_SHOWN: Final = 50
STATUSES: Final = ("pending", "succeeded", "failed")


def _shown(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "event_type": row["event_type"],
        "job_id": str(row["job_id"]) if row["job_id"] else None,
        "url": row["url"],
        "status": row["status"],
        "attempts": [
            {
                "n": a["n"],
                "at": a["started_at"].isoformat(),
                "status_code": a["status_code"],
                "latency_ms": a["latency_ms"],
                "response_excerpt": a["response_excerpt"],
                "error": a["error"],
            }
            for a in attempts
        ],
        "next_attempt_at": row["next_attempt_at"].isoformat()
        if row["status"] == "pending"
        else None,
        "last_error": row["last_error"],
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }


async def _with_attempts(
    conn: asyncpg.Connection | asyncpg.Pool, rows: list[asyncpg.Record]
) -> list[dict[str, Any]]:
    found: dict[Any, list[asyncpg.Record]] = {r["id"]: [] for r in rows}
    for a in await conn.fetch(
        """SELECT * FROM (
               SELECT a.*, row_number() OVER (PARTITION BY delivery_id ORDER BY n DESC) AS newest
               FROM attempts a WHERE delivery_id = ANY($1)
           ) t WHERE newest <= $2 ORDER BY delivery_id, n""",
        list(found),
        MAX_ATTEMPTS_SHOWN,
    ):
        found[a["delivery_id"]].append(a)
    return [_shown(r, found[r["id"]]) for r in rows]


async def listing(registry: Registry, req: WebhookRequest) -> WebhookReply:
    """An endpoint's deliveries, newest first, each with its attempts (the newest 50)."""
    endpoint = await registry.owned(registry.db, req)
    if req.status is not None and req.status not in STATUSES:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"status must be one of {', '.join(STATUSES)}",
            details=[{"pointer": "?status", "message": "unknown status"}],
        )
    before = parse_id(req.cursor) if req.cursor else None
    if req.cursor and before is None:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "cursor is not one this API returned",
            details=[{"pointer": "?cursor", "message": "unknown cursor"}],
        )
    rows = await registry.db.fetch(
        """SELECT * FROM deliveries WHERE endpoint_id = $1
             AND ($2::uuid IS NULL OR id < $2) AND ($3::text IS NULL OR status = $3)
           ORDER BY id DESC LIMIT $4""",
        endpoint["id"],
        before,
        req.status,
        req.limit + 1,
    )
    data = await _with_attempts(registry.db, rows[: req.limit])
    more = data[-1]["id"] if len(rows) > req.limit else None
    return WebhookReply(status=200, body={"data": data, "next_cursor": more})


async def redeliver(registry: Registry, req: WebhookRequest) -> WebhookReply:
    """Send a delivery again, now, with a fresh round of retries (same ``webhook-id``, so a
    receiver that already has it can tell)."""
    async with registry.outbox.transaction() as uow:
        endpoint = await registry.owned(uow.conn, req)
        delivery_id = parse_id(req.delivery_id or "")
        row = None
        if delivery_id is not None:
            row = await uow.conn.fetchrow(
                "SELECT * FROM deliveries WHERE id = $1 AND endpoint_id = $2 FOR UPDATE",
                delivery_id,
                endpoint["id"],
            )
        if row is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"delivery {req.delivery_id} not found")
        if not endpoint["enabled"]:
            raise ApiError(
                ErrorCode.CONFLICT,
                f"webhook {endpoint['id']} is disabled ({endpoint['disabled_reason']}); "
                'enable it first: PATCH it with {"enabled": true}',
            )
        updated = await fetch_one(
            uow.conn,
            """UPDATE deliveries SET status = 'pending', tries = 0, next_attempt_at = now(),
                      lease_owner = NULL, finished_at = NULL
               WHERE id = $1 RETURNING *""",
            row["id"],
        )
        (shown,) = await _with_attempts(uow.conn, [updated])
    return WebhookReply(status=202, body=shown)
