"""``python -m puras_billing``: the ledger, balances and usage charges."""

from __future__ import annotations

import asyncio

from puras_common import consumers
from puras_common.budgets import HOLD, RELEASE
from puras_common.bus import ProjectionRunner
from puras_common.errors import while_away
from puras_common.migrate import service_migrations
from puras_common.service import ServiceRuntime, run
from puras_pricing import settings_pricebook

from puras_billing import holds, ledger
from puras_billing.settings import BillingSettings
from puras_billing.usage import UsageCharges

GRANTS_CONSUMER = consumers.BILLING_GRANTS
USAGE_CONSUMER = consumers.BILLING_USAGE


async def main(settings: BillingSettings | None = None) -> None:
    settings = settings or BillingSettings.load()
    async with ServiceRuntime(
        settings, migrations=service_migrations("billing", __file__)
    ) as runtime:
        assert runtime.outbox is not None
        charges = UsageCharges(settings_pricebook(settings))
        grants = ProjectionRunner(
            js=runtime.js, outbox=runtime.outbox, spec=GRANTS_CONSUMER, apply=ledger.apply_grant
        )
        usage = ProjectionRunner(
            js=runtime.js,
            outbox=runtime.outbox,
            spec=USAGE_CONSUMER,
            apply_batch=charges.apply_batch,
            batch=settings.usage_batch,
            inbox=False,
        )
        runtime.spawn(grants.run(), GRANTS_CONSUMER.durable)
        runtime.spawn(usage.run(), USAGE_CONSUMER.durable)
        budget = holds.Holds(runtime.db)
        await runtime.nc.subscribe(HOLD, queue="billing", cb=budget.serve_hold)
        await runtime.nc.subscribe(RELEASE, queue="billing", cb=budget.serve_release)
        runtime.spawn(_prune_holds(runtime), "holds-pruning")
        await runtime.run_until_stopped()


async def _prune_holds(runtime: ServiceRuntime) -> None:
    while True:
        await asyncio.sleep(3600)
        await while_away(lambda: holds.prune(runtime.db), what="holds pruning")


if __name__ == "__main__":
    run(main)
