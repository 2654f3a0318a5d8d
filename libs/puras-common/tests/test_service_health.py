"""A service answers its health request whatever it is doing, starting up included."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from puras_common.service import ServiceRuntime
from puras_common.settings import ServiceSettings


async def test_health_answers_while_the_service_registers_a_check(js: JetStreamContext) -> None:
    runtime = ServiceRuntime(ServiceSettings.load())
    runtime.nc = js._nc

    async def database() -> dict[str, bool]:
        # While this check awaits, the service's start registers one of its own.
        runtime.checks["live"] = lambda: {"ok": True}
        await asyncio.sleep(0)
        return {"ok": True}

    runtime.checks["database"] = database
    health = await runtime.health()
    assert health["status"] == "ok"
    assert health["checks"]["database"] == {"ok": True}
    assert (await runtime.health())["checks"]["live"] == {"ok": True}
