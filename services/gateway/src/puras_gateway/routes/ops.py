"""The ops view: ``/v1/admin/ops`` as JSON (admin token), ``/admin/ops`` as a page that reads it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from puras_gateway import ops
from puras_gateway.auth import AdminDep, GatewayDep

router = APIRouter(tags=["admin"])

PAGE_HEADERS = {
    # The page's own script and style only; it talks to this origin alone.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@router.get("/v1/admin/ops")
async def ops_overview(gw: GatewayDep, _admin: AdminDep) -> Any:
    return await ops.overview(gw)


@router.get("/admin/ops", response_class=HTMLResponse, include_in_schema=False)
async def ops_page() -> HTMLResponse:
    return HTMLResponse(ops.page(), headers=PAGE_HEADERS)
