"""``python -m puras_gateway``: the public HTTP API."""

from __future__ import annotations

import functools

import httpx
from puras_common import consumers
from puras_common.budgets import BudgetClient
from puras_common.bus import Delivery, ProjectionRunner
from puras_common.http import serve
from puras_common.migrate import service_migrations
from puras_common.outbox import UnitOfWork
from puras_common.payloads import PayloadStore
from puras_common.service import ServiceRuntime, run
from puras_media import MediaService

from puras_gateway import jobs, ledger, schedules, waiting
from puras_gateway.app import create_app
from puras_gateway.context import Gateway
from puras_gateway.live import LiveJobs
from puras_gateway.notify import CATALOG_CHANNEL, Notifier
from puras_gateway.settings import GatewaySettings
from puras_gateway.sse import ServerSend

JOBS_CONSUMER = consumers.GATEWAY_JOBS
CATALOG_CONSUMER = consumers.GATEWAY_CATALOG
LEDGER_CONSUMER = consumers.GATEWAY_LEDGER
SCHEDULES_CONSUMER = consumers.GATEWAY_SCHEDULES


async def main(settings: GatewaySettings | None = None) -> None:
    settings = settings or GatewaySettings.load()
    migrations = service_migrations("gateway", __file__)
    async with ServiceRuntime(settings, migrations=migrations, pool_size=20) as runtime:
        assert runtime.outbox is not None
        token = settings.internal_token.get_secret_value()
        async with httpx.AsyncClient(timeout=60.0) as http:
            live = LiveJobs(runtime.js)
            await live.start()
            runtime.spawn(live.run(), "live")
            runtime.checks["live"] = lambda: {
                "ok": True,
                "viewers": live.viewers,
                "delivered": live.delivered,
            }
            gateway = Gateway(
                settings=settings,
                runtime=runtime,
                notifier=Notifier(settings.require_database_url(), schema=runtime.schema),
                http=http,
                payloads=PayloadStore(settings.drive_url, token=token, client=http),
                live=live,
                media=MediaService.from_settings(
                    settings, http, producer="gateway", margin_pct=settings.margin_pct
                ),
            )
            assert gateway.media is not None
            gateway.media.budgets = BudgetClient(runtime.nc)
            gateway.notifier.on_channel(CATALOG_CHANNEL, gateway.skills.clear)
            runtime.spawn(gateway.notifier.run(), "listener")
            runtime.spawn(
                ProjectionRunner(
                    js=runtime.js,
                    outbox=runtime.outbox,
                    spec=JOBS_CONSUMER,
                    apply_batch=jobs.apply_batch,
                    after_commit=functools.partial(waiting.committed, gateway.notifier, live),
                ).run(),
                JOBS_CONSUMER.durable,
            )

            async def fired(uow: UnitOfWork, d: Delivery) -> None:
                await schedules.apply_fired(gateway, uow, d)

            for spec, apply in (
                (CATALOG_CONSUMER, schedules.apply_catalog),
                (SCHEDULES_CONSUMER, fired),
            ):
                projection = ProjectionRunner(
                    js=runtime.js, outbox=runtime.outbox, spec=spec, apply=apply
                )
                runtime.spawn(projection.run(), spec.durable)
            balances = ProjectionRunner(
                js=runtime.js,
                outbox=runtime.outbox,
                spec=LEDGER_CONSUMER,
                apply_batch=ledger.apply_batch,
            )
            runtime.spawn(balances.run(), LEDGER_CONSUMER.durable)
            runtime.spawn(
                serve(ServerSend(create_app(gateway)), host=settings.host, port=settings.port),
                "http",
            )
            runtime.log.info("listening", url=settings.base_url)
            await runtime.run_until_stopped()


if __name__ == "__main__":
    run(main)
