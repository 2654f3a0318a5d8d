"""``python -m puras_webhooks``: endpoints, and the delivery of job events to them."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from puras_common import consumers
from puras_common.bus import Delivery, ProjectionRunner
from puras_common.migrate import service_migrations
from puras_common.service import ServiceRuntime, run
from puras_common.ssrf import Policy
from puras_common.webhooks import VERBS, subject

from puras_webhooks import intake
from puras_webhooks.api import Api
from puras_webhooks.endpoints import Registry
from puras_webhooks.sender import Sender
from puras_webhooks.settings import WebhooksSettings

JOBS_CONSUMER = consumers.WEBHOOKS_JOBS


async def main(settings: WebhooksSettings | None = None) -> None:
    settings = settings or WebhooksSettings.load()
    async with ServiceRuntime(
        settings, migrations=service_migrations("webhooks", __file__)
    ) as runtime:
        assert runtime.outbox is not None
        policy = Policy.parse(settings.ssrf_allow)
        if settings.ssrf_allow:
            runtime.log.warning("the SSRF guard is relaxed", allowed=settings.ssrf_allow)
        async with httpx.AsyncClient(timeout=settings.timeout_seconds) as http:
            sender = Sender(runtime.outbox, http, settings=settings, policy=policy)
            registry = Registry(runtime.outbox, settings, policy)

            async def made(_: Sequence[Delivery]) -> None:
                sender.wake.set()

            runtime.spawn(
                ProjectionRunner(
                    js=runtime.js,
                    outbox=runtime.outbox,
                    spec=JOBS_CONSUMER,
                    apply_batch=intake.apply_batch,
                    after_commit=made,
                ).run(),
                JOBS_CONSUMER.durable,
            )
            runtime.spawn(sender.run(), "sender")
            api = Api(registry, on_redeliver=sender.wake.set)
            for verb in VERBS:  # not a wildcard: svc.webhooks.health is the runtime's
                await runtime.nc.subscribe(subject(verb), queue="webhooks", cb=api.serve)
            runtime.checks["sender"] = lambda: {
                "ok": True,
                "in_flight": len(sender.in_flight),
                "sent": sender.sent,
            }
            await runtime.run_until_stopped()


if __name__ == "__main__":
    run(main)
