"""Health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from puras_gateway.auth import GatewayDep

router = APIRouter(tags=["system"])


@router.get("/healthz")
async def healthz(gw: GatewayDep) -> Any:
    report = await gw.runtime.health()
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)
