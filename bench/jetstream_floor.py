"""The floor under publish → SSE client: one message from a Python publisher to a Python
receiver in another process, through core NATS and through a JetStream stream stored on disk
(with and without an fsync per message), with nothing of Puras in between.

The receiver holds one pull request open on the stream, as the gateway's live subscription
does, and stamps each message's arrival; each message carries its publish time.

    .venv/bin/python bench/jetstream_floor.py [--messages 300] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

LIVE_CONSUMER = "live"


def _receive(url: str, through: str, ready: Any, results: Any, seconds: float) -> None:
    import nats
    import orjson
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    async def main() -> None:
        nc = await nats.connect(url)
        latencies: list[float] = []

        async def arrived(msg: Any) -> None:
            if not (msg.headers and msg.headers.get("Status")):
                latencies.append((time.time_ns() - int(msg.data)) / 1e6)

        if through == "core":
            await nc.subscribe("core.x", cb=arrived)
        else:
            js = nc.jetstream()
            await js.add_consumer(
                "FLOOR",
                ConsumerConfig(
                    name=LIVE_CONSUMER,
                    filter_subject="floor.>",
                    ack_policy=AckPolicy.NONE,
                    deliver_policy=DeliverPolicy.NEW,
                    mem_storage=True,
                    num_replicas=1,
                ),
            )
            inbox = nc.new_inbox()
            await nc.subscribe(inbox, cb=arrived)
            request = {"batch": 1_000_000, "expires": int(seconds * 2e9)}
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.FLOOR.{LIVE_CONSUMER}",
                orjson.dumps(request),
                reply=inbox,
            )
        await nc.flush()
        ready.set()
        await asyncio.sleep(seconds)
        results.put(latencies)
        await nc.close()

    asyncio.run(main())


async def measure(*, sync_always: bool, messages: int, core: bool) -> dict[str, Any]:
    import nats
    from puras_cli.engines import NatsServer
    from puras_common.access import Credentials

    root = Path(tempfile.mkdtemp(prefix="puras-floor-"))
    server = NatsServer(
        store_dir=root / "nats", users=Credentials.generate().nats_users(), sync_always=sync_always
    )
    await server.start()
    out: dict[str, Any] = {}
    try:
        nc = await nats.connect(server.url())
        js = nc.jetstream()
        await js.add_stream(name="FLOOR", subjects=["floor.>"])
        ctx = multiprocessing.get_context("spawn")
        spacing = 0.01
        for through in ("core", "jetstream") if core else ("jetstream",):
            ready, results = ctx.Event(), ctx.Queue()
            receiver = ctx.Process(
                target=_receive,
                args=(server.url(), through, ready, results, messages * spacing + 3),
            )
            receiver.start()
            await asyncio.to_thread(ready.wait)
            for _ in range(messages):
                stamp = str(time.time_ns()).encode()
                if through == "core":
                    await nc.publish("core.x", stamp)
                    await nc.flush()
                else:
                    await js.publish("floor.x", stamp)
                await asyncio.sleep(spacing)
            latencies = sorted(await asyncio.to_thread(results.get))
            receiver.join()
            out[through] = {
                "p50": statistics.median(latencies),
                "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)],
                "runs": len(latencies),
            }
        await nc.close()
    finally:
        await server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return out


async def main(messages: int, as_json: bool) -> None:
    report = {
        "fsync per message": await measure(sync_always=True, messages=messages, core=True),
        "no fsync": await measure(sync_always=False, messages=messages, core=False),
    }
    if as_json:
        print(json.dumps(report))
        return
    for storage, figures in report.items():
        for through, f in figures.items():
            print(
                f"{through:10s} {storage if through != 'core' else 'no storage':18s} p50 {f['p50']:.3f} ms  p99 {f['p99']:.3f} ms"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.json))
