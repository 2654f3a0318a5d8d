"""``python -m puras_billing``: the ledger and balances."""

from __future__ import annotations

from puras_common import streams
from puras_common.bus import ConsumerSpec, ProjectionRunner
from puras_common.migrate import service_migrations
from puras_common.service import ServiceRuntime, run

from puras_billing import ledger
from puras_billing.settings import BillingSettings

GRANTS_CONSUMER = ConsumerSpec(streams.PLATFORM, "billing-grants", ("workspace.*.credit_granted",))


async def main(settings: BillingSettings | None = None) -> None:
    settings = settings or BillingSettings.load()
    async with ServiceRuntime(settings, migrations=service_migrations("billing", __file__)) as runtime:
        assert runtime.outbox is not None
        grants = ProjectionRunner(js=runtime.js, outbox=runtime.outbox, spec=GRANTS_CONSUMER, apply=ledger.apply_grant)
        runtime.spawn(grants.run(), GRANTS_CONSUMER.durable)
        await runtime.run_until_stopped()


if __name__ == "__main__":
    run(main)
