"""Scale-out for real: a 3-node NATS cluster on loopback (every stream with 3 replicas) and two
processes of every service. Under a load of 1,000 jobs, one NATS node and one function runner
are killed and later restarted. Nothing is lost: every job succeeds, no job has two terminal
events, and the ledger balances to the micro."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from puras_common.bus import connect_nats
from puras_testing import Infra, eventually
from puras_testing.models import Call, ModelStub, Reply, StubRequest, Turn
from puras_testing.platform import ECHO_PROJECT, project_zip
from puras_testing.sse import read_sse

from .cluster import Cluster, cluster_platform, wait_gateways

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

JOBS = 1000
AGENT_EVERY = 20  # one job in 20 is an agent job: a model call, billed
MARKER = f"cluster-{uuid.uuid4().hex[:8]}"
PROJECT = {
    **ECHO_PROJECT,
    "skills/jot/skill.yaml": (
        "entrypoint: SKILL.md\nmodel: claude/haiku-4-5\n"
        "output_schema: {type: object, properties: {answer: {type: string}}, required: [answer]}\n"
    ),
    "skills/jot/SKILL.md": f"Jot it down. {MARKER}\n",
}


def agent_turn(previous: Any) -> Any:
    def turn(request: StubRequest) -> Turn:
        if MARKER in request.text():
            return Reply(tool_calls=[Call("set_output", {"answer": "jotted"})])
        return previous(request) if previous else Reply(text="ok")

    return turn


async def request(http: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    """Sent again while a gateway or its dependencies are briefly away."""
    for _ in range(600):
        with contextlib.suppress(httpx.TransportError):
            response = await http.request(method, url, **kw)
            if response.status_code != 503:
                return response
        await asyncio.sleep(0.1)
    raise AssertionError(f"{method} {url} never answered")


async def submit_all(cluster: Cluster, key: str, submitted: list[str]) -> None:
    gateways = itertools.cycle(cluster.gateways)
    numbers = iter(range(JOBS))

    async def worker() -> None:
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            for n in numbers:
                body = (
                    {"skill": "jot", "inputs": {}}
                    if n % AGENT_EVERY == 0
                    else {"skill": "echo", "inputs": {"text": str(n)}}
                )
                response = await request(http, "POST", f"{next(gateways)}/v1/jobs", json=body)
                assert response.status_code == 201, response.text
                submitted.append(response.json()["id"])

    await asyncio.gather(*(worker() for _ in range(12)))


async def chaos(cluster: Cluster, submitted: list[str]) -> None:
    """Kill a NATS node and a runner a third of the way in; restart them a little later."""
    await eventually(lambda: len(submitted) >= JOBS // 3, timeout=120, what="a third submitted")
    await cluster.supervisor.pause("nats-2", sig=signal.SIGKILL)
    await cluster.supervisor.pause("function-runner-2", sig=signal.SIGKILL)
    await eventually(lambda: len(submitted) >= JOBS // 2, timeout=120, what="half submitted")
    await cluster.supervisor.resume("nats-2")
    await cluster.supervisor.resume("function-runner-2")


async def test_a_cluster_loses_nothing_when_a_node_and_a_runner_die(
    infra: Infra, model_provider: ModelStub
) -> None:
    env = {
        **model_provider.env(),
        "PURAS_FUNCTION_RUNNER_LEASE_SECONDS": "5",
        "PURAS_AGENT_RUNNER_SSRF_ALLOW": "127.0.0.0/8",
    }
    previous = model_provider.fallback
    model_provider.fallback = agent_turn(previous)
    try:
        async with cluster_platform(infra, extra_env=env) as cluster:
            await wait_gateways(cluster)
            await run_the_load(cluster)
    finally:
        model_provider.fallback = previous


async def run_the_load(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.gateways[0], timeout=120) as http:
        created = await http.post(
            "/v1/admin/workspaces",
            json={"slug": f"cluster-{uuid.uuid4().hex[:6]}", "credit_usd": "10"},
            headers=cluster.admin_headers(),
        )
        assert created.status_code == 201, created.text
        key = created.json()["api_key"]
        workspace_id = created.json()["workspace"]["id"]
        pushed = await http.post(
            "/v1/deployments",
            files={"bundle": ("b.zip", project_zip(PROJECT), "application/zip")},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert pushed.status_code == 201, pushed.text

    submitted: list[str] = []
    await asyncio.gather(submit_all(cluster, key, submitted), chaos(cluster, submitted))
    assert len(set(submitted)) == JOBS

    db = await asyncpg.connect(cluster.database_dsn)
    try:

        async def all_ended() -> dict[str, int] | None:
            rows = await db.fetch(
                "SELECT status, count(*) AS n FROM gateway.jobs WHERE workspace_id = $1 GROUP BY 1",
                uuid.UUID(workspace_id),
            )
            counts = {r["status"]: r["n"] for r in rows}
            ended = sum(counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
            return counts if ended == JOBS else None

        counts = await eventually(
            all_ended, timeout=240, interval=1.0, what="all 1,000 jobs to end"
        )
        failures = await db.fetch(
            "SELECT skill_name, error FROM gateway.jobs WHERE workspace_id = $1 AND status <> 'succeeded'",
            uuid.UUID(workspace_id),
        )
        assert counts == {"succeeded": JOBS}, (counts, [dict(r) for r in failures][:5])
        await no_job_ended_twice(cluster, submitted)
        await streams_replay_whole_on_every_gateway(cluster, key, submitted[:: JOBS // 4])
        await the_ledger_balances(db, uuid.UUID(workspace_id), agent_jobs=JOBS // AGENT_EVERY)
    finally:
        await db.close()


async def streams_replay_whole_on_every_gateway(
    cluster: Cluster, key: str, job_ids: list[str]
) -> None:
    """A finished job's stream, read from the replicated JOBS stream (any replica may answer its
    direct gets), shows every event the read model holds, then its end; resumed at its last
    event, it ends at once."""
    for url, job_id in itertools.product(cluster.gateways, job_ids):
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            page = (await request(http, "GET", f"/v1/jobs/{job_id}/events")).json()["events"]
            for resume in ({}, {"Last-Event-ID": str(page[-1]["id"])}):
                events, end, _ = await read_sse(
                    http, "GET", f"/v1/jobs/{job_id}/stream", headers=resume
                )
                ids = [data["id"] for _, data in events]
                assert ids == ([] if resume else [e["id"] for e in page]), (url, job_id)
                assert end is not None and end["status"] == "succeeded", (url, job_id)


async def no_job_ended_twice(cluster: Cluster, job_ids: list[str]) -> None:
    nc = await connect_nats(cluster.config.nats_urls["admin"], name="check")
    try:
        js = nc.jetstream(timeout=30)
        info = await js.stream_info("JOBS")
        assert info.config.num_replicas == 3
        ended: dict[str, int] = {}
        for terminal in ("succeeded", "failed", "cancelled"):
            state = (await js.stream_info("JOBS", subjects_filter=f"job.*.{terminal}")).state
            for subject, n in (state.subjects or {}).items():
                job = subject.split(".")[1]
                ended[job] = ended.get(job, 0) + n
        ours = {j: ended.get(j, 0) for j in job_ids}
        assert set(ours.values()) == {1}, {j: n for j, n in ours.items() if n != 1}
    finally:
        await nc.close()


async def the_ledger_balances(
    db: asyncpg.Connection, workspace: uuid.UUID, *, agent_jobs: int
) -> None:
    entries = await db.fetch(
        "SELECT kind, count(*) AS n, sum(amount_micros) AS micros FROM billing.ledger "
        "WHERE workspace_id = $1 GROUP BY kind",
        workspace,
    )
    by_kind = {r["kind"]: (r["n"], r["micros"]) for r in entries}
    assert by_kind["grant"] == (1, 10_000_000)
    charges, charged = by_kind["charge"]
    calls = await db.fetchval(
        "SELECT count(*) FROM billing.usage WHERE workspace_id = $1 AND kind = 'llm'", workspace
    )
    assert calls == agent_jobs and charged < 0  # one model call per agent job, each once
    # They are the only charges: an attempt's own compute is free here, so it goes to no
    # ledger; each job's shows in the gateway's usage rows, from its history (more than one
    # for a job whose runner died under it and that ran again).
    assert charges == calls

    async def every_job_metered() -> bool:
        jobs = await db.fetchval(
            "SELECT count(DISTINCT job_id) FROM gateway.usage_rows WHERE workspace_id = $1 AND kind = 'compute'",
            workspace,
        )
        return bool(jobs == JOBS)

    await eventually(every_job_metered, timeout=30, what="every job's compute row")
    assert not await db.fetchval(
        "SELECT count(*) FROM billing.usage WHERE workspace_id = $1 AND kind = 'compute'", workspace
    )
    usage = await db.fetchval(
        "SELECT coalesce(sum(billed_micros), 0) FROM billing.usage WHERE workspace_id = $1",
        workspace,
    )
    if -charged != usage:
        unmatched = await db.fetch(
            """SELECT l.source_event_id, l.job_id, l.amount_micros, u.billed_micros, u.workspace_id
               FROM billing.ledger l LEFT JOIN billing.usage u ON u.usage_id = l.source_event_id
               WHERE l.workspace_id = $1 AND l.kind = 'charge'
                 AND (u.billed_micros IS NULL OR u.billed_micros <> -l.amount_micros)""",
            workspace,
        )
        raise AssertionError(f"charges {charged} != usage {usage}: {[dict(r) for r in unmatched]}")
    total = sum(micros for _n, micros in by_kind.values())
    assert (
        await db.fetchval(
            "SELECT balance_micros FROM billing.balances WHERE workspace_id = $1", workspace
        )
        == total
    )

    async def gateway_agrees() -> bool:
        return (
            await db.fetchval(
                "SELECT balance_micros FROM gateway.balances WHERE workspace_id = $1", workspace
            )
            == total
        )

    await eventually(gateway_agrees, timeout=30, what="the gateway's balance to match the ledger")
    cost = await db.fetchval(
        "SELECT coalesce(sum(cost_micros), 0) FROM gateway.job_costs WHERE workspace_id = $1",
        workspace,
    )
    assert cost == -charged
