"""An extension: every failed job, posted as JSON to a webhook.

It reads the platform's ``job.*.failed`` events (see docs/asyncapi.yaml) with a NATS user of
its own, allowed nothing but its durable consumer on the JOBS stream (see docs/extensions.md
for how to create that user). Each event is acknowledged once the webhook answered 2xx, so a
webhook that is down delays posts and loses none; a redelivered event may be posted twice, so
the receiver should deduplicate by ``event_id``.

    python examples/extensions/failed_jobs.py --nats nats://failed-jobs:PASSWORD@127.0.0.1:4222 \\
        --webhook https://hooks.example.com/puras-failures
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

import httpx
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

STREAM = "JOBS"
FILTER = "job.*.failed"


def summary(event: dict[str, Any]) -> dict[str, Any]:
    """What the webhook receives for one failed job."""
    payload = event.get("payload", {})
    return {
        "event_id": event["id"],
        "job_id": event.get("job_id"),
        "workspace_id": event.get("workspace_id"),
        "failed_at": event.get("occurred_at"),
        "attempt": payload.get("attempt"),
        "reason": payload.get("reason"),
        "error": payload.get("error"),
    }


async def forward(
    nc: Any,
    *,
    webhook: str,
    http: httpx.AsyncClient,
    durable: str = "failed-jobs",
    stop: asyncio.Event | None = None,
) -> None:
    """Post every failed job to ``webhook`` until ``stop`` is set."""
    js = nc.jetstream()
    config = ConsumerConfig(
        name=durable,
        durable_name=durable,
        filter_subject=FILTER,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.NEW,  # from now on; not the whole history
        ack_wait=30,
        max_deliver=-1,
    )
    await js.add_consumer(STREAM, config)
    sub = await js.pull_subscribe_bind(durable, stream=STREAM)
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            msgs = await sub.fetch(32, timeout=1)
        except TimeoutError:  # nats-py raises its own subclass, or asyncio's, by code path
            continue
        for msg in msgs:
            event = json.loads(msg.data)
            try:
                response = await http.post(webhook, json=summary(event))
                delivered = response.is_success
            except httpx.HTTPError:
                delivered = False
            if delivered:
                await msg.ack()
            else:
                await msg.nak(delay=5)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", required=True, help="nats://failed-jobs:PASSWORD@host:port")
    parser.add_argument("--webhook", required=True)
    parser.add_argument("--durable", default="failed-jobs")
    args = parser.parse_args()
    nc = await nats.connect(args.nats, max_reconnect_attempts=-1)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await forward(nc, webhook=args.webhook, http=http, durable=args.durable)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
