"""Money over HTTP: ``GET /v1/balance``, ``GET /v1/pricing``, ``POST /v1/pricing/quote``,
``GET /v1/jobs/{id}/usage``, and the workspace's usage: every billed call (``GET /v1/usage``,
``GET /v1/usage/export`` as CSV) and spend per day and per model (``GET /v1/usage/summary``). Balances and usage come from the ledger read model
(:mod:`puras_gateway.ledger`); prices from :mod:`puras_pricing` at ``PURAS_MARGIN_PCT``."""

from __future__ import annotations

import base64
import binascii
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from puras_common.api import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, ApiError, ErrorCode
from puras_common.ids import parse_id
from puras_common.money import format_usd
from puras_pricing import PricingError, UnknownModel, settings_pricebook
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from puras_gateway import jobs, ledger
from puras_gateway.auth import GatewayDep, PrincipalDep, limit_address
from puras_gateway.bodies import check_limit, parse_model, read_capped
from puras_gateway.context import Gateway

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
    version = await ledger.balance_version(gw.db, who.workspace_id)
    return Balance(
        workspace=who.workspace_slug,
        balance_micros=balance,
        balance_usd=format_usd(balance),
        pending_grants_micros=pending,
        version=version,
    )


@router.get("/v1/pricing")
async def get_pricing(gw: GatewayDep) -> Any:
    """Every priced slug with its public price (upstream plus the platform margin)."""
    return settings_pricebook(gw.settings).price_list()


class QuoteRequest(BaseModel):
    """``POST /v1/pricing/quote`` body: what a call would cost, before making it."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)
    input_tokens: StrictInt = Field(default=0, ge=0, le=MAX_TOKENS)
    output_tokens: StrictInt = Field(default=0, ge=0, le=MAX_TOKENS)
    units: StrictStr | None = Field(
        default=None, max_length=40, description="Measured units, a decimal string"
    )


@router.post("/v1/pricing/quote")
async def quote(request: Request, gw: GatewayDep) -> Any:
    limit_address(request, gw)  # public: whoever asks is counted by address
    body = parse_model(QuoteRequest, await read_capped(request, 256 * 1024))
    try:
        q = settings_pricebook(gw.settings).quote(
            body.model,
            body.inputs,
            input_tokens=body.input_tokens,
            output_tokens=body.output_tokens,
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
    cpu_ms: int | None = None
    """For ``compute`` (``puras/compute``): the CPU time of the job's processes, in ms."""
    wall_ms: int | None = None
    """For ``compute``: the attempt's wall time, in ms."""


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
    rows = await ledger.usage_page(gw.db, job["id"], after=after, limit=limit + 1)
    page = [UsageRow(**dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return UsagePage(
        job_id=job["id"],
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
            ErrorCode.INVALID_REQUEST,
            f"cursor {cursor!r} is not one this API returned",
            details=[{"pointer": "?cursor", "message": "unknown cursor"}],
        ) from None


class WorkspaceUsagePage(BaseModel):
    data: list[UsageRow]
    next_cursor: str | None = None


MAX_EXPORT_DAYS: Final = 366
EXPORT_BATCH: Final = 1000
CSV_COLUMNS: Final = (
    "created_at",
    "id",
    "job_id",
    "key_id",
    "kind",
    "provider",
    "model",
    "variant",
    "input_tokens",
    "output_tokens",
    "units",
    "unit",
    "billed_micros",
    "cpu_ms",
    "wall_ms",
)


@router.get("/v1/usage", response_model=WorkspaceUsagePage)
async def workspace_usage(
    gw: GatewayDep,
    who: PrincipalDep,
    since: Annotated[datetime | None, Query(description="From this time (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="Before this time (ISO 8601)")] = None,
    limit: Annotated[int, Query(description=f"1–{MAX_PAGE_LIMIT}")] = DEFAULT_PAGE_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> WorkspaceUsagePage:
    """Every billed call of the workspace (model, units, micros), newest first."""
    check_limit(limit)
    after = _decode_cursor(cursor) if cursor is not None else None
    rows = await ledger.workspace_usage(
        gw.db, who.workspace_id, since=since, until=until, after=after, limit=limit + 1
    )
    page = [UsageRow(**dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return WorkspaceUsagePage(
        data=page, next_cursor=_encode_cursor(page[-1].created_at, page[-1].id) if more else None
    )


def _export_range(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    """``[since, until)``, 30 days to now by default, at most ``MAX_EXPORT_DAYS`` long."""
    end = until or datetime.now(UTC)
    start = since or end - timedelta(days=30)
    if start.tzinfo is None or end.tzinfo is None:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "since and until need a time zone (e.g. 2025-01-01T00:00:00Z)",
            details=[{"pointer": "?since", "message": "time zone required"}],
        )
    if not start < end or end - start > timedelta(days=MAX_EXPORT_DAYS):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"export range {start.isoformat()} to {end.isoformat()} must be positive and at most "
            f"{MAX_EXPORT_DAYS} days; export longer periods in parts",
            details=[{"pointer": "?since", "message": "range out of bounds"}],
        )
    return start, end


def _cell(value: Any) -> str:
    text = "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)
    # A spreadsheet would run a cell starting with = + - @ as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


async def _csv_rows(
    gw: Gateway, workspace_id: UUID, start: datetime, end: datetime
) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    after: tuple[datetime, UUID] | None = None
    while True:
        rows = await ledger.workspace_usage(
            gw.db, workspace_id, since=start, until=end, after=after, limit=EXPORT_BATCH
        )
        for row in rows:
            writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < EXPORT_BATCH:
            return
        after = (rows[-1]["created_at"], rows[-1]["id"])


@router.get(
    "/v1/usage/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "One line per billed call"}},
)
async def export_usage(
    gw: GatewayDep,
    who: PrincipalDep,
    since: Annotated[datetime | None, Query(description="From (default: 30 days ago)")] = None,
    until: Annotated[datetime | None, Query(description="Before (default: now)")] = None,
) -> StreamingResponse:
    """Every billed call in ``[since, until)`` (at most 366 days) as CSV, newest first."""
    start, end = _export_range(since, until)
    name = f"usage-{who.workspace_slug}-{start.date()}-{end.date()}.csv"
    return StreamingResponse(
        _csv_rows(gw, who.workspace_id, start, end),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


class DaySpend(BaseModel):
    day: date
    billed_micros: int
    calls: int


class ModelSpend(BaseModel):
    model: str
    kind: str
    billed_micros: int
    calls: int


class SpendSummary(BaseModel):
    since: date
    """The first UTC day counted."""
    total_micros: int
    by_day: list[DaySpend]
    """Every UTC day from ``since`` to today, days without a call at 0."""
    by_model: list[ModelSpend]
    """The most spent first."""


@router.get("/v1/usage/summary", response_model=SpendSummary)
async def usage_summary(
    gw: GatewayDep,
    who: PrincipalDep,
    days: Annotated[
        int, Query(ge=1, le=366, description="The last N UTC days, today included")
    ] = 30,
) -> SpendSummary:
    """Spend per UTC day and per model over the last ``days`` days."""
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    by_day = {r["day"]: r for r in await ledger.spend_by_day(gw.db, who.workspace_id, since=since)}
    models = await ledger.spend_by_model(gw.db, who.workspace_id, since=since)
    zero = {"billed_micros": 0, "calls": 0}
    series = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = by_day.get(day, zero)
        series.append(DaySpend(day=day, billed_micros=row["billed_micros"], calls=row["calls"]))
    return SpendSummary(
        since=first,
        total_micros=sum(d.billed_micros for d in series),
        by_day=series,
        by_model=[ModelSpend(**dict(r)) for r in models],
    )
