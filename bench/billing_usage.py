"""Usage events charged per second by one billing process.

Starts private NATS and PostgreSQL (as the test suite does), one ``python -m puras_billing``
process, and publishes N ``usage.recorded`` events (a mix of LLM token and media calls, spread
over W workspaces) to the USAGE stream, pipelined, as runners would. It measures from the first
publish until billing has charged every one (one usage row, one ledger entry and the outbox
events each), then checks that nothing was charged twice and every balance is the sum of its
entries.

    .venv/bin/python bench/billing_usage.py [--events N] [--workspaces W] [--json]

Two runs by default: a live stream (billing running while events arrive) and a backlog (events
stored first, then billing started), which is the pure apply rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

import asyncpg
from puras_common.bus import connect_nats, publish
from puras_common.consumers import provision_bus
from puras_common.events import UsageRecorded, UsageRecordedPayload
from puras_testing import start_infra

CALLS: list[dict[str, Any]] = [
    {
        "kind": "llm",
        "provider": "anthropic",
        "model": "claude/sonnet-4-7",
        "input_tokens": 3_200,
        "output_tokens": 410,
    },
    {
        "kind": "llm",
        "provider": "openai",
        "model": "gpt/5-mini",
        "input_tokens": 900,
        "output_tokens": 120,
    },
    {
        "kind": "media",
        "provider": "fal",
        "model": "bytedance/seedance-2-t2v",
        "inputs": {"duration": "5"},
    },
    {
        "kind": "media",
        "provider": "fal",
        "model": "openai/gpt-image-2",
        "inputs": {"quality": "medium", "size": "1024x1024"},
    },
    {
        "kind": "media",
        "provider": "fal",
        "model": "kuaishou/kling-v3-t2v",
        "inputs": {"duration": "10"},
    },
]


def usage_events(n: int, workspaces: list[uuid.UUID]) -> list[UsageRecorded]:
    jobs = [uuid.uuid4() for _ in range(max(1, n // 20))]
    return [
        UsageRecorded.new(
            UsageRecordedPayload(job_id=jobs[i % len(jobs)], attempt=1, **CALLS[i % len(CALLS)]),
            producer="bench",
            workspace_id=workspaces[i % len(workspaces)],
            job_id=jobs[i % len(jobs)],
        )
        for i in range(n)
    ]


async def start_billing(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "puras_billing",
        env={**os.environ, **env, "PURAS_LOG_LEVEL": "WARNING"},
    )


async def wait_for(probe: Any, *, timeout: float, what: str, interval: float = 0.01) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await probe():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
    return time.perf_counter()


async def charged(db: asyncpg.Connection, workspaces: list[uuid.UUID]) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM billing.usage WHERE workspace_id = ANY($1)", workspaces
    )


async def consistent(db: asyncpg.Connection, workspaces: list[uuid.UUID], n: int) -> None:
    entries = await db.fetchval(
        "SELECT count(*) FROM billing.ledger WHERE workspace_id = ANY($1) AND kind = 'charge'",
        workspaces,
    )
    mismatched = await db.fetchval(
        """SELECT count(*) FROM billing.balances b WHERE b.workspace_id = ANY($1) AND b.balance_micros <>
               (SELECT sum(amount_micros) FROM billing.ledger l WHERE l.workspace_id = b.workspace_id)""",
        workspaces,
    )
    assert entries == n, f"{entries} ledger entries for {n} usage events"
    assert mismatched == 0, f"{mismatched} balances differ from the sum of their entries"


async def run_once(
    infra: Any, js: Any, db: asyncpg.Connection, *, n: int, workspaces: int, backlog: bool
) -> dict[str, Any]:
    ws = [uuid.uuid4() for _ in range(workspaces)]
    events = usage_events(n, ws)
    billing = None if backlog else await start_billing(infra.service_env("billing"))
    try:
        if billing is not None:
            await wait_for(lambda: consumer_ready(js), timeout=60, what="billing to start")
        t0 = time.perf_counter()
        for start in range(0, n, 2_000):
            await publish(js, events[start : start + 2_000])
        published = time.perf_counter()
        if billing is None:
            # The live run went first, so the schema exists; billing charges from its start.
            billing = await start_billing(infra.service_env("billing"))
            t0 = await wait_for(lambda: _any(db, ws), timeout=60, what="the first charge")
        done = await wait_for(
            lambda: _all(db, ws, n), timeout=600, what=f"{n} charges", interval=0.05
        )
        await consistent(db, ws, n)
        cpu_s = _cpu_seconds(billing.pid)
    finally:
        if billing is not None:
            billing.terminate()
            await billing.wait()
    seconds = done - t0
    return {
        "mode": "backlog" if backlog else "live",
        "events": n,
        "workspaces": workspaces,
        "publish_s": round(published - t0, 3) if not backlog else None,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds),
        "billing_cpu_ms_per_1000": round(cpu_s * 1e6 / n),
    }


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (its start-up included)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def consumer_ready(js: Any) -> bool:
    """Billing has migrated its schema and is pulling from its (provisioned) consumer."""
    try:
        info = await js.consumer_info("USAGE", "billing-usage")
    except Exception:
        return False
    return bool(info.num_waiting)


async def _any(db: asyncpg.Connection, ws: list[uuid.UUID]) -> bool:
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM billing.usage WHERE workspace_id = ANY($1))", ws
        )
    )


async def _all(db: asyncpg.Connection, ws: list[uuid.UUID], n: int) -> bool:
    return await charged(db, ws) >= n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workspaces", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    async with start_infra() as infra:
        nc = await connect_nats(infra.nats_url(), name="bench")
        db = await asyncpg.connect(infra.admin_database_dsn)
        try:
            js = nc.jetstream()
            await provision_bus(js)
            results = [
                await run_once(
                    infra, js, db, n=args.events, workspaces=args.workspaces, backlog=False
                ),
                await run_once(
                    infra, js, db, n=args.events, workspaces=args.workspaces, backlog=True
                ),
                await run_once(infra, js, db, n=args.events, workspaces=1, backlog=True),
            ]
        finally:
            await db.close()
            await nc.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        extra = f", published in {r['publish_s']} s" if r["publish_s"] is not None else ""
        print(
            f"{r['mode']:>7}: {r['events']} usage events over {r['workspaces']} workspaces charged in "
            f"{r['seconds']} s = {r['events_per_s']}/s{extra};"
            f" billing's CPU {r['billing_cpu_ms_per_1000']} ms per 1,000 events"
        )


if __name__ == "__main__":
    asyncio.run(main())
