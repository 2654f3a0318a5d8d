"""``/v1/webhooks``: a workspace's webhook endpoints, their signing secrets, and their delivery
log. The webhooks service owns all of it; the gateway authenticates the caller and asks it, for
the caller's workspace only (:mod:`puras_gateway.webhooks_api`). Endpoints and their secrets
decide where a workspace's results go, so only owners (and secret keys) make, change or delete
them; members read them and their log, and may redeliver."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from puras_common.api import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page
from puras_common.webhooks import EVENT_TYPES
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway.auth import GatewayDep, PrincipalDep, require_owner
from puras_gateway.bodies import check_limit, parse_model, read_capped
from puras_gateway.deployments_api import require_secret_key
from puras_gateway.openapi import ERRORS
from puras_gateway.webhooks_api import call

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERRORS)

MAX_BODY_BYTES = 16 * 1024
EventType = Literal["job.succeeded", "job.failed", "job.cancelled", "job.waiting_for_input"]
assert set(EventType.__args__) == set(EVENT_TYPES)  # type: ignore[attr-defined]


class WebhookIn(BaseModel):
    """``POST /v1/webhooks`` body."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["endpoint", "job_url"] = Field(
        default="endpoint",
        description="endpoint: events of every job go to url; job_url: the workspace's signer "
        "for the webhook_url single jobs name (no url)",
    )
    url: str | None = Field(default=None, max_length=2048)
    events: list[EventType] | None = Field(
        default=None, min_length=1, description="Default: all of them"
    )
    description: str = Field(default="", max_length=500)


class WebhookUpdate(BaseModel):
    """``PATCH /v1/webhooks/{id}`` body: the fields to change."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2048)
    events: list[EventType] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(
        default=None, description="true enables a disabled endpoint again (its count restarts)"
    )


class WebhookOut(BaseModel):
    id: UUID
    kind: Literal["endpoint", "job_url"]
    url: str | None
    description: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    consecutive_failures: int
    previous_secret_expires_at: datetime | None
    """After a rotation, the old secret also signs until then."""
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookOut):
    secret: str
    """``whsec_…``: shown this once (rotate to get a new one)."""


class AttemptOut(BaseModel):
    n: int
    at: datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str
    """The first KiB of what the endpoint answered."""
    error: str | None


class DeliveryOut(BaseModel):
    id: UUID
    """Also the ``webhook-id`` header, the same on every attempt."""
    event_type: str
    job_id: UUID | None
    url: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


@router.post("", status_code=201, response_model=WebhookWithSecret, openapi_extra=_json(WebhookIn))
async def create_webhook(request: Request, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Register an endpoint; its signing secret is in the answer, this once."""
    require_owner(who, "webhooks")
    body = parse_model(WebhookIn, await read_capped(request, MAX_BODY_BYTES))
    return await call(gw, "create", who, body=body.model_dump(exclude_unset=True), seal=True)


@router.get("", response_model=Page[WebhookOut])
async def list_webhooks(
    gw: GatewayDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(description=f"1–{MAX_PAGE_LIMIT}")] = DEFAULT_PAGE_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Any:
    require_secret_key(who)
    check_limit(limit)
    return await call(gw, "list", who, limit=limit, cursor=cursor)


@router.get("/{webhook_id}", response_model=WebhookOut)
async def get_webhook(webhook_id: str, gw: GatewayDep, who: PrincipalDep) -> Any:
    require_secret_key(who)
    return await call(gw, "get", who, endpoint_id=webhook_id)


@router.patch("/{webhook_id}", response_model=WebhookOut, openapi_extra=_json(WebhookUpdate))
async def update_webhook(
    webhook_id: str, request: Request, gw: GatewayDep, who: PrincipalDep
) -> Any:
    require_owner(who, "webhooks")
    body = parse_model(WebhookUpdate, await read_capped(request, MAX_BODY_BYTES))
    changes = body.model_dump(exclude_unset=True)
    return await call(gw, "update", who, endpoint_id=webhook_id, body=changes)


@router.delete("/{webhook_id}")
async def delete_webhook(webhook_id: str, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Delete an endpoint; its pending deliveries fail."""
    require_owner(who, "webhooks")
    return await call(gw, "delete", who, endpoint_id=webhook_id)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookWithSecret)
async def rotate_secret(webhook_id: str, gw: GatewayDep, who: PrincipalDep) -> Any:
    """A new signing secret, shown this once; the old one keeps signing beside it for a day."""
    require_owner(who, "webhooks")
    return await call(gw, "rotate", who, endpoint_id=webhook_id, seal=True)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryOut])
async def list_deliveries(
    webhook_id: str,
    gw: GatewayDep,
    who: PrincipalDep,
    status: Annotated[
        Literal["pending", "succeeded", "failed"] | None, Query(description="Only these")
    ] = None,
    limit: Annotated[int, Query(description=f"1–{MAX_PAGE_LIMIT}")] = DEFAULT_PAGE_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Any:
    """Deliveries to the endpoint, newest first, each with every attempt: status, latency and
    the start of the answer."""
    require_secret_key(who)
    check_limit(limit)
    return await call(
        gw, "deliveries", who, endpoint_id=webhook_id, limit=limit, cursor=cursor, status=status
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
)
async def redeliver(webhook_id: str, delivery_id: str, gw: GatewayDep, who: PrincipalDep) -> Any:
    """Send a delivery again now (with the same ``webhook-id``), with a fresh round of retries."""
    require_secret_key(who)
    return await call(gw, "redeliver", who, endpoint_id=webhook_id, delivery_id=delivery_id)
