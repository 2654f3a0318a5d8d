"""Money over HTTP: ``GET /v1/balance``, ``GET /v1/pricing``, ``POST /v1/pricing/quote`` and
``GET /v1/jobs/{id}/usage``. Balances and usage come from the ledger read model
(:mod:`puras_gateway.ledger`); prices from :mod:`puras_common.pricing` at ``PURAS_MARGIN_PCT``."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Query, Request
from puras_common.api import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, ApiError, ErrorCode
from puras_common.ids import parse_id
from puras_common.money import format_usd
from puras_common.pricing import PricingError, UnknownModel, pricebook
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from puras_gateway import jobs, ledger
from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.routes.keys import check_limit

router = APIRouter(tags=["billing"])

MAX_TOKENS: Final = 10**12


class Balance(BaseModel):
    workspace: str
    balance_micros: int
    """As billing last posted it: the sum of the workspace's ledger entries."""
    balance_usd: str
    pending_grants_micros: int
    """Grants accepted but not yet posted by billing; they already count for new jobs."""
    version: int
    """How many ledger entries the balance includes."""


@router.get("/v1/balance", response_model=Balance)
async def get_balance(gw: GatewayDep, who: PrincipalDep) -> Balance:
    balance, pending = await ledger.available_micros(gw.db, who.workspace_id)
    version = await gw.db.fetchval("SELECT version FROM balances WHERE workspace_id = $1", who.workspace_id)
    return Balance(
        workspace=who.workspace_slug, balance_micros=balance, balance_usd=format_usd(balance),
        pending_grants_micros=pending, version=version or 0,
    )


@router.get("/v1/pricing")
async def get_pricing(gw: GatewayDep) -> Any:
    """Every priced slug with its public price (upstream plus the platform margin)."""
    return pricebook(gw.settings.margin_pct).price_list()


class QuoteRequest(BaseModel):
    """``POST /v1/pricing/quote`` body: what a call would cost, before making it."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)
    input_tokens: StrictInt = Field(default=0, ge=0, le=MAX_TOKENS)
    output_tokens: StrictInt = Field(default=0, ge=0, le=MAX_TOKENS)
    units: StrictStr | None = Field(default=None, max_length=40, description="Measured units, a decimal string")


@router.post("/v1/pricing/quote")
async def quote(request: Request, gw: GatewayDep) -> Any:
    body = parse_model(QuoteRequest, await read_capped(request, 256 * 1024))
    try:
        q = pricebook(gw.settings.margin_pct).quote(
            body.model, body.inputs, input_tokens=body.input_tokens, output_tokens=body.output_tokens,
            measured_units=body.units,
        )
    except PricingError as exc:
        details: list[dict[str, Any]] = [{"pointer": exc.pointer, "message": str(exc)}]
        if isinstance(exc, UnknownModel):
            details[0]["close_matches"] = exc.close
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc), details=details) from None
    return {
        "model": q.slug,
        "kind": q.kind,
        "unit": q.unit,
        "units": q.units_text,
        "variant": q.variant,
        "inputs": dict(q.inputs),
        "billed_micros": q.billed_micros,
        "billed_usd": format_usd(q.billed_micros),
    }


class UsageRow(BaseModel):
    """One billed upstream call of a job."""

    id: UUID
    job_id: UUID | None
    key_id: UUID | None
    kind: str
    provider: str
    model: str
    variant: str | None
    input_tokens: int
    output_tokens: int
    units: str
    unit: str
    billed_micros: int
    created_at: datetime


class UsagePage(BaseModel):
    job_id: UUID
    cost_micros: int
    """The job's own usage: the sum of ``billed_micros`` over every row (all pages)."""
    total_cost_micros: int
    """With the job's subagent tree."""
    data: list[UsageRow]
    next_cursor: str | None = None


@router.get("/v1/jobs/{job_id}/usage", response_model=UsagePage)
async def job_usage(
    job_id: str,
    gw: GatewayDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(description=f"1–{MAX_PAGE_LIMIT}")] = DEFAULT_PAGE_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> UsagePage:
    check_limit(limit)
    after = _decode_cursor(cursor) if cursor is not None else None
    parsed = parse_id(job_id)
    job = await jobs.fetch_job(gw.db, parsed, who.workspace_id) if parsed else None
    if job is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"job {job_id} not found")
    rows = await gw.db.fetch(
        """SELECT usage_id AS id, job_id, key_id, kind, provider, model, variant, input_tokens, output_tokens,
                  units::text AS units, unit, billed_micros, created_at
           FROM usage_rows
           WHERE job_id = $1 AND ($2::timestamptz IS NULL OR (created_at, usage_id) < ($2, $3::uuid))
           ORDER BY created_at DESC, usage_id DESC LIMIT $4""",
        parsed, after[0] if after else None, after[1] if after else None, limit + 1,
    )
    page = [UsageRow(**dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return UsagePage(
        job_id=parsed,  # type: ignore[arg-type]
        cost_micros=job["cost_micros"],
        total_cost_micros=job["total_cost_micros"],
        data=page,
        next_cursor=_encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    )


def _encode_cursor(at: datetime, usage_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{usage_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, usage_id = text.partition("|")
        return datetime.fromisoformat(at), UUID(usage_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(
            ErrorCode.INVALID_REQUEST, f"cursor {cursor!r} is not one this API returned",
            details=[{"pointer": "?cursor", "message": "unknown cursor"}],
        ) from None
