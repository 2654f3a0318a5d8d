"""The operator's view of a running platform: every instance of every service, with its health,
readiness, lag and counters, gathered over NATS (each instance answers for itself). The ops page
turns successive readings into rates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from puras_common.access import SERVICES
from puras_common.service import instances_health

from puras_gateway.context import Gateway


async def overview(gw: Gateway) -> dict[str, Any]:
    """``{at, services: {name: {instances: [...], up, ready}}}``."""
    nc = gw.runtime.nc
    found = await asyncio.gather(*(instances_health(nc, s) for s in SERVICES))
    services = {}
    for name, instances in zip(SERVICES, found, strict=True):
        services[name] = {
            "up": len(instances),
            "ready": sum(1 for i in instances if i.get("status") == "ok" and not i.get("draining")),
            "instances": instances,
        }
    return {"at": datetime.now(UTC).isoformat(), "services": services}


def page() -> str:
    """The self-contained HTML page (no assets from elsewhere)."""
    return resources.files("puras_gateway").joinpath("static/ops.html").read_text()
