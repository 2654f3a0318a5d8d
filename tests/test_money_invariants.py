"""The money invariants, for any interleaving of grants, usage events, duplicate deliveries,
crashed batches and billing restarts:

* a workspace's balance is the sum of its ledger entries;
* a job's cost is the sum of its usage rows' billed micros;
* no usage event is charged twice;
* the gateway's read model, rebuilt from the LEDGER events in any order and with duplicates,
  equals the live one and billing's own numbers.

Billing's real policies (grants, usage charges) run in-process through the projection runner's
own batch transaction, on scratch schemas of the session's PostgreSQL; the gateway's read model
is folded from the ``ledger.posted`` events billing wrote to its outbox.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import puras_billing
import puras_gateway
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from puras_billing import ledger as billing_ledger
from puras_billing.usage import UsageCharges
from puras_common import streams
from puras_common.bus import ConsumerSpec, Delivery, ProjectionRunner
from puras_common.db import create_pool
from puras_common.envelope import Event, parse_event
from puras_common.events import CreditGranted, LedgerPosted, UsageRecorded, UsageRecordedPayload
from puras_common.events.platform import CreditGrantedPayload
from puras_common.migrate import service_migrations
from puras_common.outbox import Outbox
from puras_gateway import ledger as gateway_ledger
from puras_pricing import pricebook
from puras_testing import Infra, Scratch, scratch_schema

pytestmark = pytest.mark.asyncio(loop_scope="session")

CALLS: list[tuple[str, dict[str, Any]]] = [
    (
        "claude/sonnet-4-7",
        {"kind": "llm", "provider": "anthropic", "input_tokens": 1234, "output_tokens": 567},
    ),
    (
        "claude/haiku-4-5",
        {"kind": "llm", "provider": "anthropic", "input_tokens": 1, "output_tokens": 1},
    ),
    (
        "gpt/4o-mini",
        {"kind": "llm", "provider": "openai", "input_tokens": 90_000, "output_tokens": 0},
    ),
    ("bytedance/seedance-2-t2v", {"kind": "media", "provider": "fal", "inputs": {"duration": "5"}}),
    (
        "bytedance/seedance-2-r2v",
        {"kind": "media", "provider": "fal", "units": "7.25", "inputs": {"video_urls": ["v"]}},
    ),
    (
        "openai/gpt-image-2",
        {"kind": "media", "provider": "fal", "inputs": {"quality": "low", "num_images": 2}},
    ),
    (
        "kuaishou/kling-v3-t2v",
        {"kind": "media", "provider": "fal", "inputs": {"duration": "10", "voice_control": True}},
    ),
    ("web_search", {"kind": "tool", "provider": "platform"}),
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def schemas(infra: Infra) -> AsyncIterator[tuple[Scratch, Scratch, Scratch]]:
    """Billing's schema, and two gateway schemas: one folded live, one rebuilt."""
    billing = service_migrations("billing", puras_billing.__file__)
    gateway = service_migrations("gateway", puras_gateway.__file__)
    async with (
        scratch_schema(infra.admin_database_dsn, billing) as b,
        scratch_schema(infra.admin_database_dsn, gateway) as live,
        scratch_schema(infra.admin_database_dsn, gateway) as rebuilt,
    ):
        yield b, live, rebuilt


@dataclass
class Billing:
    """One billing process: its connections and its two consumers' policies."""

    scratch: Scratch
    run: str
    outbox: Outbox = field(init=False)
    pool: Any = None

    async def start(self) -> None:
        self.pool = await create_pool(
            self.scratch.dsn,
            schema=self.scratch.schema,
            application_name="billing-test",
            min_size=1,
            max_size=2,
        )
        self.outbox = Outbox(self.pool, schema=self.scratch.schema)
        charges = UsageCharges(pricebook())
        self.grants = self._runner("grants", apply=billing_ledger.apply_grant)
        self.usage = self._runner("usage", apply_batch=charges.apply_batch)  # as billing runs it

    def _runner(self, purpose: str, **apply: Any) -> ProjectionRunner:
        spec = ConsumerSpec(streams.USAGE, f"billing-{purpose}-{self.run}", ("usage.>",))
        return ProjectionRunner(js=None, outbox=self.outbox, spec=spec, **apply)  # type: ignore[arg-type]

    async def stop(self) -> None:
        await self.pool.close()

    async def deliver(
        self, events: list[Event], *, crash: bool = False, inbox: str | None = None
    ) -> None:
        """One batch per consumer through the runner's own transaction (inbox + apply + outbox)."""
        for runner, kind in ((self.grants, CreditGranted), (self.usage, UsageRecorded)):
            batch = [
                Delivery(e, i + 1, 1, e.subject, None)
                for i, e in enumerate(events)
                if isinstance(e, kind)
            ]  # type: ignore[arg-type]
            if not batch:
                continue
            if inbox is not None:  # a consumer that remembers nothing, as after a rebuild
                runner = ProjectionRunner(
                    js=None,
                    outbox=self.outbox,
                    apply=runner.apply,  # type: ignore[arg-type]
                    apply_batch=runner.apply_batch,
                    spec=ConsumerSpec(streams.USAGE, f"{runner.consumer}-{inbox}", ("usage.>",)),
                )
            if crash:
                await self._crash(runner, batch)
            else:
                await runner._apply_batch(batch)

    async def _crash(self, runner: ProjectionRunner, batch: list[Delivery]) -> None:
        """The process dies in the middle of the batch's transaction, after writing one event's
        effects (or before, if the inbox already held them all): nothing may remain."""

        class Died(Exception):
            pass

        async def apply_then_die(uow: Any, d: Any) -> None:
            await original(uow, d)
            raise Died

        which = "apply" if runner.apply is not None else "apply_batch"
        original = getattr(runner, which)
        setattr(runner, which, apply_then_die)
        try:
            with contextlib.suppress(Died):
                await runner._apply_batch(batch)
        finally:
            setattr(runner, which, original)


def scenario() -> st.SearchStrategy[dict[str, Any]]:
    source = st.one_of(
        st.tuples(st.just("grant"), st.integers(0, 1), st.integers(1, 3_000_000)),
        st.tuples(
            st.just("usage"),
            st.integers(0, 1),
            st.integers(0, 2),
            st.integers(0, 1),
            st.integers(0, len(CALLS) - 1),
        ),
    )
    step = st.one_of(
        st.tuples(
            st.just("deliver"),
            st.lists(st.integers(0, 63), min_size=1, max_size=6),
            st.booleans(),
            st.booleans(),
        ),
        st.tuples(st.just("restart")),
    )
    return st.fixed_dictionaries(
        {
            "sources": st.lists(source, min_size=1, max_size=14),
            "steps": st.lists(step, max_size=12),
            "seed": st.randoms(),
        }
    )


def make_events(
    sources: list[tuple], workspaces: list[uuid.UUID], jobs: dict, keys: dict
) -> list[Event]:
    events: list[Event] = []
    for source in sources:
        if source[0] == "grant":
            _, w, micros = source
            events.append(
                CreditGranted.new(
                    CreditGrantedPayload(amount_micros=micros),
                    producer="gateway",
                    workspace_id=workspaces[w],
                )
            )
        else:
            _, w, j, k, c = source
            model, fields = CALLS[c]
            job, key = jobs[w][j], keys[w][k]
            payload = UsageRecordedPayload(job_id=job, key_id=key, attempt=1, model=model, **fields)
            events.append(
                UsageRecorded.new(
                    payload, producer="agent-runner", workspace_id=workspaces[w], job_id=job
                )
            )
    return events


async def check_ledger(pool: Any, workspaces: list[uuid.UUID]) -> None:
    """Always: balance = sum of entries; at most one entry and one usage row per usage event."""
    rows = await pool.fetch(
        """SELECT b.workspace_id, b.balance_micros, b.entries,
                  (SELECT coalesce(sum(amount_micros), 0) FROM ledger l WHERE l.workspace_id = b.workspace_id) AS total,
                  (SELECT count(*) FROM ledger l WHERE l.workspace_id = b.workspace_id) AS n
           FROM balances b WHERE b.workspace_id = ANY($1)""",
        workspaces,
    )
    for r in rows:
        assert (r["balance_micros"], r["entries"]) == (r["total"], r["n"])
    assert not await pool.fetchval(
        "SELECT count(*) FROM (SELECT source_event_id FROM ledger WHERE workspace_id = ANY($1) GROUP BY 1 HAVING count(*) > 1) d",
        workspaces,
    )
    charged_twice = await pool.fetchval(
        """SELECT count(*) FROM usage u JOIN ledger l ON l.source_event_id = u.usage_id
           WHERE u.workspace_id = ANY($1) AND l.amount_micros <> -u.billed_micros""",
        workspaces,
    )
    assert charged_twice == 0


async def gateway_view(pool: Any, workspaces: list[uuid.UUID]) -> dict[str, Any]:
    return {
        "balances": [
            dict(r)
            for r in await pool.fetch(
                "SELECT workspace_id, balance_micros, version FROM balances WHERE workspace_id = ANY($1) ORDER BY 1",
                workspaces,
            )
        ],
        "jobs": [
            dict(r)
            for r in await pool.fetch(
                "SELECT job_id, cost_micros, usage_rows FROM job_costs WHERE workspace_id = ANY($1) ORDER BY 1",
                workspaces,
            )
        ],
        "keys": [
            dict(r)
            for r in await pool.fetch(
                """SELECT k.key_id, k.day, k.spent_micros FROM key_spend k
               WHERE k.key_id IN (SELECT key_id FROM usage_rows WHERE workspace_id = ANY($1)) ORDER BY 1, 2""",
                workspaces,
            )
        ],
        "usage": [
            dict(r)
            for r in await pool.fetch(
                """SELECT usage_id, job_id, key_id, model, units, unit, billed_micros, created_at FROM usage_rows
               WHERE workspace_id = ANY($1) ORDER BY 1""",
                workspaces,
            )
        ],
    }


async def fold(gateway: Scratch, events: list[LedgerPosted], *, batch: int) -> None:
    """Fold ``events`` as the gateway's consumer does, ``batch`` at a time, a transaction each."""
    for start in range(0, len(events), batch):
        async with gateway.pool.acquire() as conn, conn.transaction():
            await gateway_ledger.fold(conn, events[start : start + batch])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenario())
async def test_money_invariants_hold_for_any_interleaving(
    case: dict[str, Any], schemas: tuple[Scratch, Scratch, Scratch]
) -> None:
    billing_db, live, rebuilt = schemas
    workspaces = [uuid.uuid4(), uuid.uuid4()]
    jobs = {w: [uuid.uuid4() for _ in range(3)] for w in range(2)}
    keys = {w: [uuid.uuid4() for _ in range(2)] for w in range(2)}
    events = make_events(case["sources"], workspaces, jobs, keys)

    billing = Billing(billing_db, run=uuid.uuid4().hex[:8])
    await billing.start()
    try:
        for step in case["steps"]:
            if step[0] == "restart":
                await billing.stop()
                await billing.start()
                continue
            _, picks, crash, bypass = step
            batch = [events[i % len(events)] for i in picks]
            await billing.deliver(
                batch, crash=crash, inbox=uuid.uuid4().hex[:6] if bypass else None
            )
            await check_ledger(billing.pool, workspaces)
        # JetStream delivers every event at least once in the end.
        await billing.deliver(events)
        await billing.deliver(list(reversed(events)))
        await check_ledger(billing.pool, workspaces)
    finally:
        await billing.stop()

    # What the events say it must come to.
    expected_balance: dict[uuid.UUID, int] = defaultdict(int)
    expected_job: dict[uuid.UUID, int] = defaultdict(int)
    for event in {e.id: e for e in events}.values():
        if isinstance(event, CreditGranted):
            expected_balance[event.workspace_id] += event.payload.amount_micros  # type: ignore[index]
        else:
            cost = pricebook().quote_usage(event.payload).billed_micros  # type: ignore[attr-defined]
            expected_balance[event.workspace_id] -= cost  # type: ignore[index]
            expected_job[event.payload.job_id] += cost  # type: ignore[attr-defined,index]
    balances = {
        r["workspace_id"]: r["balance_micros"]
        for r in await billing_db.pool.fetch(
            "SELECT workspace_id, balance_micros FROM balances WHERE workspace_id = ANY($1)",
            workspaces,
        )
    }
    assert balances == dict(expected_balance)
    job_costs = {
        r["job_id"]: r["cost"]
        for r in await billing_db.pool.fetch(
            "SELECT job_id, sum(billed_micros) AS cost FROM usage WHERE workspace_id = ANY($1) GROUP BY job_id",
            workspaces,
        )
    }
    assert job_costs == dict(expected_job)

    # The LEDGER stream is billing's outbox: fold it live (duplicated), and rebuilt in another order.
    posted = [
        parse_event(r["body"])
        for r in await billing_db.pool.fetch(
            "SELECT body::text AS body FROM outbox WHERE type = 'ledger.posted' AND body->>'workspace_id' = ANY($1::text[]) ORDER BY tx_id, seq",
            [str(w) for w in workspaces],
        )
    ]
    # Live: every event twice, in batches that may hold both copies; rebuilt: one at a time.
    live_batch = case["seed"].randint(1, 2 * len(posted) or 1)
    await fold(live, [e for e in posted for _ in range(2)], batch=live_batch)  # type: ignore[misc]
    shuffled = list(posted)
    case["seed"].shuffle(shuffled)
    await fold(rebuilt, shuffled, batch=1)  # type: ignore[arg-type]
    view = await gateway_view(live.pool, workspaces)
    assert view == await gateway_view(rebuilt.pool, workspaces)
    assert {r["workspace_id"]: r["balance_micros"] for r in view["balances"]} == dict(
        expected_balance
    )
    assert {r["job_id"]: r["cost_micros"] for r in view["jobs"]} == {
        j: c for j, c in expected_job.items()
    }
    assert sum(r["billed_micros"] for r in view["usage"]) == sum(expected_job.values())
