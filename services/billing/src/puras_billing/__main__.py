"""``python -m puras_billing``: the ledger, balances and usage charges."""

from __future__ import annotations

from puras_common import streams, subjects
from puras_common.bus import ConsumerSpec, ProjectionRunner
from puras_common.migrate import service_migrations
from puras_common.pricing import Pricebook
from puras_common.service import ServiceRuntime, run

from puras_billing import ledger
from puras_billing.settings import BillingSettings
from puras_billing.usage import UsageCharges

GRANTS_CONSUMER = ConsumerSpec(streams.PLATFORM, "billing-grants", ("workspace.*.credit_granted",))
USAGE_CONSUMER = ConsumerSpec(streams.USAGE, "billing-usage", (subjects.USAGE_ALL,))


async def main(settings: BillingSettings | None = None) -> None:
    settings = settings or BillingSettings.load()
    async with ServiceRuntime(settings, migrations=service_migrations("billing", __file__)) as runtime:
        assert runtime.outbox is not None
        charges = UsageCharges(Pricebook(settings.margin_pct))
        grants = ProjectionRunner(js=runtime.js, outbox=runtime.outbox, spec=GRANTS_CONSUMER, apply=ledger.apply_grant)
        usage = ProjectionRunner(
            js=runtime.js, outbox=runtime.outbox, spec=USAGE_CONSUMER, apply=charges.apply, batch=settings.usage_batch
        )
        runtime.spawn(grants.run(), GRANTS_CONSUMER.durable)
        runtime.spawn(usage.run(), USAGE_CONSUMER.durable)
        await runtime.run_until_stopped()


if __name__ == "__main__":
    run(main)
