"""Endpoints: where a workspace's job events are sent, which events, and the secret that signs
them. Every operation here answers one ``svc.webhooks.<verb>`` call in the public API's shapes;
errors are :class:`ApiError` with JSON pointers, as the gateway's own are.

A registered endpoint is checked by the SSRF guard when it is made or changed (its host is
resolved then, and refused if any address is private, loopback, link-local …) and again at
every attempt, where it counts. The secret is shown once, when it is made (or rotated), sealed
to the gateway's one-off key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
from puras_common.api import ApiError, ErrorCode
from puras_common.db import fetch_one
from puras_common.ids import new_id, parse_id
from puras_common.outbox import Outbox
from puras_common.secret_delivery import seal
from puras_common.ssrf import BlockedURL, FetchError, Policy, checked
from puras_common.webhooks import (
    EVENT_TYPES,
    TargetError,
    WebhookReply,
    WebhookRequest,
    check_target,
)

from puras_webhooks import signing
from puras_webhooks.settings import WebhooksSettings

MAX_DESCRIPTION: Final = 500
BODY_FIELDS: Final = {
    "create": ("kind", "url", "events", "description"),
    "update": ("url", "events", "description", "enabled"),
}


def _invalid(pointer: str, message: str) -> ApiError:
    return ApiError(
        ErrorCode.INVALID_REQUEST,
        f"{message} at {pointer}",
        details=[{"pointer": pointer, "message": message}],
    )


def shown(row: asyncpg.Record) -> dict[str, Any]:
    """An endpoint as the API shows it: never its secret."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "url": row["url"],
        "description": row["description"],
        "events": list(row["events"]),
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "disabled_at": iso(row["disabled_at"]),
        "failing_since": iso(row["failing_since"]),
        "consecutive_failures": row["consecutive_failures"],
        "previous_secret_expires_at": iso(row["previous_until"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


@dataclass
class Registry:
    """The endpoints of every workspace, and the calls on them."""

    outbox: Outbox
    settings: WebhooksSettings
    policy: Policy

    @property
    def db(self) -> asyncpg.Pool:
        return self.outbox.pool

    # -- checking what a client sends

    def _body(self, req: WebhookRequest, verb: str) -> dict[str, Any]:
        body = req.body or {}
        for name in body:
            if name not in BODY_FIELDS[verb]:
                raise _invalid(f"/{name}", "unknown field")
        return body

    @staticmethod
    def _events(value: Any) -> list[str]:
        if value is None:
            return list(EVENT_TYPES)
        if not isinstance(value, list) or not value or len(value) > len(EVENT_TYPES):
            raise _invalid("/events", f"must be a non-empty list of: {', '.join(EVENT_TYPES)}")
        for i, name in enumerate(value):
            if name not in EVENT_TYPES:
                raise _invalid(f"/events/{i}", f"must be one of: {', '.join(EVENT_TYPES)}")
        return list(dict.fromkeys(value))

    @staticmethod
    def _description(value: Any) -> str:
        if value is None:
            return ""
        if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
            raise _invalid("/description", f"must be text of at most {MAX_DESCRIPTION} characters")
        return value

    async def _url(self, value: Any) -> str:
        """A URL the guard lets through now (its host resolved now)."""
        if not isinstance(value, str):
            raise _invalid("/url", "required: the http(s) URL to send events to")
        try:
            check_target(value)
            await checked(value, self.policy)
        except (TargetError, BlockedURL, FetchError) as exc:
            raise _invalid("/url", str(exc)) from None
        return value

    async def owned(
        self, conn: asyncpg.Connection | asyncpg.Pool, req: WebhookRequest, *, lock: bool = False
    ) -> asyncpg.Record:
        endpoint_id = parse_id(req.endpoint_id or "")
        row = None
        if endpoint_id is not None:
            row = await conn.fetchrow(
                "SELECT * FROM endpoints WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL"
                + (" FOR UPDATE" if lock else ""),
                endpoint_id,
                req.workspace_id,
            )
        if row is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"webhook {req.endpoint_id} not found")
        return row

    def _sealed(self, req: WebhookRequest, endpoint_id: uuid.UUID, secret: str) -> dict[str, str]:
        if req.reply_key is None:
            raise _invalid("/reply_key", "the caller sent no key to seal the new secret to")
        return seal({"secret": secret}, reply_key=req.reply_key, job_id=endpoint_id)

    # -- the verbs

    async def create(self, req: WebhookRequest) -> WebhookReply:
        body = self._body(req, "create")
        kind = body.get("kind", "endpoint")
        if kind not in ("endpoint", "job_url"):
            raise _invalid("/kind", "must be endpoint (the default) or job_url")
        events = self._events(body.get("events"))
        description = self._description(body.get("description"))
        url = None
        if kind == "endpoint":
            url = await self._url(body.get("url"))
        elif "url" in body:
            raise _invalid("/url", "a job_url endpoint has no URL: each job names its own")
        secret = signing.new_secret()
        async with self.outbox.transaction() as uow:
            await uow.conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('webhooks:' || $1::text))",
                str(req.workspace_id),
            )
            if kind == "job_url":
                if await job_url_endpoint(uow.conn, req.workspace_id) is not None:
                    raise ApiError(
                        ErrorCode.CONFLICT,
                        "the workspace already has its job_url endpoint: rotate its secret to "
                        "see a new one",
                    )
            else:
                await self._room_for_one(uow.conn, req)
            row = await fetch_one(
                uow.conn,
                """INSERT INTO endpoints (id, workspace_id, kind, url, description, events, secret)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
                new_id(),
                req.workspace_id,
                kind,
                url,
                description,
                events,
                secret,
            )
        return WebhookReply(
            status=201, body=shown(row), sealed_secret=self._sealed(req, row["id"], secret)
        )

    async def _room_for_one(self, conn: asyncpg.Connection, req: WebhookRequest) -> None:
        count = await conn.fetchval(
            """SELECT count(*) FROM endpoints
               WHERE workspace_id = $1 AND kind = 'endpoint' AND deleted_at IS NULL""",
            req.workspace_id,
        )
        most = self.settings.max_endpoints_per_workspace
        if count >= most:
            raise ApiError(
                ErrorCode.CONFLICT,
                f"the workspace has {count} webhooks; the limit is {most}: delete one first",
            )

    async def list(self, req: WebhookRequest) -> WebhookReply:
        before = parse_id(req.cursor) if req.cursor else None
        if req.cursor and before is None:
            raise _invalid("?cursor", "not a cursor this API returned")
        rows = await self.db.fetch(
            """SELECT * FROM endpoints WHERE workspace_id = $1 AND deleted_at IS NULL
                 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3""",
            req.workspace_id,
            before,
            req.limit + 1,
        )
        data = [shown(r) for r in rows[: req.limit]]
        more = data[-1]["id"] if len(rows) > req.limit else None
        return WebhookReply(status=200, body={"data": data, "next_cursor": more})

    async def get(self, req: WebhookRequest) -> WebhookReply:
        return WebhookReply(status=200, body=shown(await self.owned(self.db, req)))

    async def update(self, req: WebhookRequest) -> WebhookReply:
        body = self._body(req, "update")
        async with self.outbox.transaction() as uow:
            row = await self.owned(uow.conn, req, lock=True)
            if row["kind"] == "job_url" and "url" in body:
                raise _invalid("/url", "a job_url endpoint has no URL: each job names its own")
            url = await self._url(body["url"]) if "url" in body else row["url"]
            events = self._events(body["events"]) if "events" in body else list(row["events"])
            description = (
                self._description(body["description"])
                if "description" in body
                else row["description"]
            )
            enabled = body.get("enabled", row["enabled"])
            if not isinstance(enabled, bool):
                raise _invalid("/enabled", "must be true or false")
            updated = await fetch_one(
                uow.conn,
                """UPDATE endpoints SET url = $2, events = $3, description = $4, enabled = $5,
                          updated_at = now(),
                          disabled_reason = CASE WHEN $5 THEN NULL
                                                 WHEN enabled THEN 'disabled by request'
                                                 ELSE disabled_reason END,
                          disabled_at = CASE WHEN $5 THEN NULL WHEN enabled THEN now()
                                             ELSE disabled_at END,
                          failing_since = CASE WHEN $5 AND NOT enabled THEN NULL ELSE failing_since END,
                          consecutive_failures = CASE WHEN $5 AND NOT enabled THEN 0
                                                      ELSE consecutive_failures END
                   WHERE id = $1 RETURNING *""",
                row["id"],
                url,
                events,
                description,
                enabled,
            )
        return WebhookReply(status=200, body=shown(updated))

    async def delete(self, req: WebhookRequest) -> WebhookReply:
        async with self.outbox.transaction() as uow:
            row = await self.owned(uow.conn, req, lock=True)
            await uow.conn.execute(
                "UPDATE endpoints SET deleted_at = now(), enabled = false WHERE id = $1", row["id"]
            )
            await fail_pending(uow.conn, row["id"], why="the webhook was deleted")
        return WebhookReply(status=200, body={"id": str(row["id"]), "deleted": True})

    async def rotate(self, req: WebhookRequest) -> WebhookReply:
        secret = signing.new_secret()
        until = datetime.now(UTC) + timedelta(seconds=self.settings.secret_overlap_seconds)
        async with self.outbox.transaction() as uow:
            row = await self.owned(uow.conn, req, lock=True)
            updated = await fetch_one(
                uow.conn,
                """UPDATE endpoints SET previous_secret = secret, previous_until = $3, secret = $2,
                          updated_at = now()
                   WHERE id = $1 RETURNING *""",
                row["id"],
                secret,
                until,
            )
        return WebhookReply(
            status=200, body=shown(updated), sealed_secret=self._sealed(req, row["id"], secret)
        )


async def job_url_endpoint(
    conn: asyncpg.Connection, workspace_id: uuid.UUID
) -> asyncpg.Record | None:
    """The workspace's job_url endpoint, if it has one."""
    return await conn.fetchrow(
        """SELECT * FROM endpoints
           WHERE workspace_id = $1 AND kind = 'job_url' AND deleted_at IS NULL""",
        workspace_id,
    )


async def fail_pending(conn: asyncpg.Connection, endpoint_id: uuid.UUID, *, why: str) -> None:
    """End the endpoint's pending deliveries: nothing more is sent to it."""
    await conn.execute(
        """UPDATE deliveries SET status = 'failed', last_error = $2, finished_at = now(),
                  lease_owner = NULL
           WHERE endpoint_id = $1 AND status = 'pending'""",
        endpoint_id,
        why,
    )
