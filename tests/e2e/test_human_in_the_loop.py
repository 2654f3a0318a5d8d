"""Human in the loop end to end: a function job (``puras.request_input``) and an agent job (the
``request_input`` tool) ask a question, wait without holding the workspace's only slot (another
job runs on it meanwhile) and run on with the answer; answers are checked against the question's
schema; a question nobody answers fails the job at its timeout, even across a scheduler restart.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import puras
import pytest
from httpx_sse import aconnect_sse
from puras_testing import eventually
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import Platform, Tenant
from puras_testing.webhooks import webhook_receiver
from standardwebhooks import Webhook

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCHEDULER = "scheduler-one-slot"
MARKER = f"hitl-{uuid.uuid4().hex[:8]}"

PROJECT = {
    "skills/approve/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 60\n",
    "skills/approve/main.py": """
import puras

APPROVER = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def run(inputs):
    print("asking", flush=True)
    who = puras.request_input("Who approves the spend?", APPROVER, timeout=inputs.get("timeout", 600))
    count = None
    if inputs.get("twice"):
        count = puras.request_input("How many units?", {"type": "integer", "minimum": 1})
    return {"approved_by": who["name"], "units": count}
""",
    "skills/quick/skill.yaml": "entrypoint: main.py:run\n",
    "skills/quick/main.py": "def run(inputs):\n    return {'quick': True}\n",
    "skills/painter/skill.yaml": (
        "description: Paint the fence in the colour a person picks.\n"
        "entrypoint: SKILL.md\n"
        "output_schema: {type: object, properties: {colour: {type: string}}, required: [colour]}\n"
    ),
    "skills/painter/SKILL.md": f"Ask which colour to paint the fence, then report it. {MARKER}\n",
}


@pytest.fixture(scope="module")
async def one_slot(platform: Platform) -> AsyncIterator[Platform]:
    """The scheduler replaced by one that lets a workspace run one job at a time."""
    await platform.add_replica(
        "scheduler", SCHEDULER, env={"PURAS_SCHEDULER_MAX_CONCURRENCY_PER_WORKSPACE": "1"}
    )
    await platform.stop_service("scheduler")
    try:
        yield platform
    finally:
        await platform.start_service("scheduler")
        await platform.stop_service(SCHEDULER)


@pytest.fixture(scope="module")
async def tenant(one_slot: Platform) -> Tenant:
    tenant = await one_slot.tenant(f"hitl-{uuid.uuid4().hex[:8]}")
    response = await tenant.push(PROJECT)
    assert response.status_code == 201, response.text
    return tenant


async def submit(tenant: Tenant, skill: str, inputs: dict[str, Any] | None = None) -> str:
    response = await tenant.http.post("/v1/jobs", json={"skill": skill, "inputs": inputs or {}})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


async def job(tenant: Tenant, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await tenant.http.get(f"/v1/jobs/{job_id}")).json()
    return body


async def status(
    tenant: Tenant, job_id: str, wanted: str, *, timeout: float = 60
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        current = await job(tenant, job_id)
        return current if current["status"] == wanted else None

    return await eventually(reached, timeout=timeout, what=f"job {job_id} to be {wanted}")


async def public_types(tenant: Tenant, job_id: str) -> list[str]:
    events = (await tenant.http.get(f"/v1/jobs/{job_id}/events")).json()["events"]
    return [e["type"] for e in events]


async def test_a_function_job_asks_waits_in_no_slot_and_runs_on_with_the_answers(
    tenant: Tenant, platform: Platform
) -> None:
    asking = await submit(tenant, "approve", {"twice": True})
    waiting = await status(tenant, asking, "waiting")
    question = waiting["input_request"]
    assert question["prompt"] == "Who approves the spend?" and question["number"] == 1
    assert question["answer_schema"]["required"] == ["name"]
    assert question["timeout_seconds"] == 600 and question["expires_at"]

    # The workspace has one slot, and the waiting job does not hold it.
    other = await tenant.http.post("/v1/jobs?wait=true", json={"skill": "quick", "inputs": {}})
    assert other.json()["status"] == "succeeded", other.text
    assert (await job(tenant, asking))["status"] == "waiting"

    wrong = await tenant.http.post(f"/v1/jobs/{asking}/input", json={"answer": {"name": 7}})
    assert wrong.status_code == 400, wrong.text
    error = wrong.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"][0]["pointer"] == "/answer/name"
    assert (await job(tenant, asking))["status"] == "waiting"  # nothing half-written

    stale = await tenant.http.post(
        f"/v1/jobs/{asking}/input",
        json={"answer": {"name": "Ada"}, "request_id": str(uuid.uuid4())},
    )
    assert stale.status_code == 409, stale.text

    answered = await tenant.http.post(
        f"/v1/jobs/{asking}/input",
        json={"answer": {"name": "Ada"}, "request_id": question["request_id"]},
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "queued"
    # A second answer to the same question is refused, whether the job still runs on or
    # already waits on its next question (which the request id does not name).
    again = await tenant.http.post(
        f"/v1/jobs/{asking}/input",
        json={"answer": {"name": "Bob"}, "request_id": question["request_id"]},
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"

    # The job runs again from the start: the first question replays its answer, the second asks.
    second = (await status(tenant, asking, "waiting", timeout=60))["input_request"]
    while second["number"] != 2:
        second = (await status(tenant, asking, "waiting"))["input_request"]
    assert second["prompt"] == "How many units?"
    too_few = await tenant.http.post(f"/v1/jobs/{asking}/input", json={"answer": 0})
    assert (
        too_few.status_code == 400 and too_few.json()["error"]["details"][0]["pointer"] == "/answer"
    )
    assert (
        await tenant.http.post(f"/v1/jobs/{asking}/input", json={"answer": 3})
    ).status_code == 200

    done = await status(tenant, asking, "succeeded")
    assert done["result"] == {"approved_by": "Ada", "units": 3}
    assert done["attempt"] == 3 and done["input_request"] is None
    types = await public_types(tenant, asking)
    assert types.count("input_requested") == 2 and types.count("input_provided") == 2
    assert types[-1] == "succeeded"
    late = await tenant.http.post(f"/v1/jobs/{asking}/input", json={"answer": 1})
    assert late.status_code == 409 and "succeeded" in late.json()["error"]["message"]


async def test_an_agent_asks_with_its_tool_waits_and_gets_the_answer_as_the_tools_result(
    tenant: Tenant, model_provider: ModelStub
) -> None:
    ask = Call(
        "request_input",
        {
            "question": "Which colour?",
            "schema": {"type": "string", "enum": ["red", "blue"]},
            "timeout_seconds": 900,
        },
        id="ask-1",
    )
    script = model_provider.script(
        Reply(text="I need a decision.", tool_calls=[ask, Call("bash", {"command": "echo later"})]),
        Reply(tool_calls=[Call("set_output", {"colour": "blue"})]),
        match=MARKER,
    )
    painting = await submit(tenant, "painter")
    question = (await status(tenant, painting, "waiting"))["input_request"]
    assert question["prompt"] == "Which colour?" and question["timeout_seconds"] == 900
    assert question["answer_schema"] == {"type": "string", "enum": ["red", "blue"]}

    other = await tenant.http.post("/v1/jobs?wait=true", json={"skill": "quick", "inputs": {}})
    assert other.json()["status"] == "succeeded", other.text

    wrong = await tenant.http.post(f"/v1/jobs/{painting}/input", json={"answer": "green"})
    assert wrong.status_code == 400 and wrong.json()["error"]["details"][0]["pointer"] == "/answer"
    assert (
        await tenant.http.post(f"/v1/jobs/{painting}/input", json={"answer": "blue"})
    ).status_code == 200

    done = await status(tenant, painting, "succeeded")
    assert done["result"] == {"colour": "blue"}
    requests = model_provider.requests_for(script)
    assert len(requests) == 2 and model_provider.remaining(script) == 0
    results = requests[1].last_tool_results()
    assert results[0]["call_id"] == "ask-1" and results[0]["text"] == '"blue"'
    assert "not run" in results[1]["text"]  # the call after the question waited with it
    types = await public_types(tenant, painting)
    assert "input_requested" in types and types[-1] == "succeeded"
    assert types.count("step") == 2  # the conversation went on; it did not start over


async def test_answers_are_only_for_the_callers_waiting_jobs(
    tenant: Tenant, platform: Platform
) -> None:
    asking = await submit(tenant, "approve")
    await status(tenant, asking, "waiting")
    stranger = await platform.tenant(f"hitl-other-{uuid.uuid4().hex[:8]}")
    theirs = await stranger.http.post(f"/v1/jobs/{asking}/input", json={"answer": {"name": "Eve"}})
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"
    async with httpx.AsyncClient(base_url=platform.url) as anonymous:
        refused = await anonymous.post(f"/v1/jobs/{asking}/input", json={"answer": {"name": "x"}})
    assert refused.status_code == 401
    huge = {"name": "x" * (32 * 1024)}
    too_big = await tenant.http.post(f"/v1/jobs/{asking}/input", json={"answer": huge})
    assert too_big.status_code == 413, too_big.text
    not_json = await tenant.http.post(f"/v1/jobs/{asking}/input", content=b"{")
    assert not_json.status_code == 400
    quick = await submit(tenant, "quick")
    await status(tenant, quick, "succeeded")
    assert (
        await tenant.http.post(f"/v1/jobs/{quick}/input", json={"answer": 1})
    ).status_code == 409

    async with httpx.AsyncClient(base_url=platform.url) as http:
        route = (await http.get("/openapi.json")).json()["paths"]["/v1/jobs/{job_id}/input"]
    assert {"400", "404", "409", "413"} <= set(route["post"]["responses"])

    cancelled = await tenant.http.post(f"/v1/jobs/{asking}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


async def test_an_unanswered_question_fails_the_job_at_its_timeout(tenant: Tenant) -> None:
    asking = await submit(tenant, "approve", {"timeout": 2})
    assert (await status(tenant, asking, "waiting"))["input_request"]["timeout_seconds"] == 2
    failed = await status(tenant, asking, "failed", timeout=30)
    assert failed["error"].startswith("no input arrived within 2 s")
    assert (
        await tenant.http.post(f"/v1/jobs/{asking}/input", json={"answer": {"name": "x"}})
    ).status_code == 409


async def test_the_timeout_holds_across_a_scheduler_restart(
    tenant: Tenant, one_slot: Platform
) -> None:
    asking = await submit(tenant, "approve", {"timeout": 3})
    expires = datetime.fromisoformat(
        (await status(tenant, asking, "waiting"))["input_request"]["expires_at"]
    )
    await one_slot.stop_service(SCHEDULER)
    try:
        await eventually(
            lambda: datetime.now(UTC) > expires, timeout=30, what="the question to expire"
        )
        assert (await job(tenant, asking))["status"] == "waiting"  # no scheduler, no decision yet
    finally:
        await one_slot.start_service(SCHEDULER)
    failed = await status(tenant, asking, "failed", timeout=30)
    assert failed["error"].startswith("no input arrived within 3 s")


async def test_the_python_sdk_waits_for_the_question_and_provides_the_input(
    tenant: Tenant, platform: Platform
) -> None:
    def answer_with_the_sync_client() -> dict[str, Any]:
        with puras.Client(api_key=tenant.api_key, api_base=platform.url) as client:
            job = client.submit("approve", {})
            waiting = client.wait(job["id"], timeout=60, poll_interval=0.1, or_waiting=True)
            assert waiting["status"] == "waiting", waiting
            with pytest.raises(puras.PurasAPIError) as wrong:
                client.provide_input(job["id"], {"name": ["not", "a", "string"]})
            assert (wrong.value.status, wrong.value.code) == (400, "invalid_request")
            assert wrong.value.details[0]["pointer"] == "/answer/name"
            queued = client.provide_input(
                job["id"], {"name": "Grace"}, request_id=waiting["input_request"]["request_id"]
            )
            assert queued["status"] == "queued"
            done: dict[str, Any] = client.wait(job["id"], timeout=60, poll_interval=0.1)
            return done

    done = await asyncio.to_thread(answer_with_the_sync_client)
    assert done["status"] == "succeeded" and done["result"]["approved_by"] == "Grace"

    async with puras.AsyncClient(api_key=tenant.api_key, api_base=platform.url) as client:
        job = await client.submit("approve", {})
        waiting = await client.wait(job["id"], timeout=60, poll_interval=0.1, or_waiting=True)
        assert waiting["input_request"]["prompt"] == "Who approves the spend?"
        await client.provide_input(job["id"], {"name": "Lin"})
        with pytest.raises(puras.PurasAPIError) as twice:
            await client.provide_input(job["id"], {"name": "Lin"})
        assert twice.value.status == 409
        done = await client.wait(job["id"], timeout=60, poll_interval=0.1)
        assert done["result"]["approved_by"] == "Lin"


async def test_a_question_shown_on_the_stream_is_read_and_answered_at_once(
    tenant: Tenant, admin_db: asyncpg.Connection
) -> None:
    """The stream shows the question before the gateway's read model has taken it; a client
    that reads the job, lists the workspace's waiting jobs, or answers, with its next requests
    still finds it waiting on that question. Here the gateway's projections are held back until
    the requests are sent: their inbox is locked against writes, with a lock that takes no
    transaction id, so the outbox relays, which wait for older transactions, go on."""
    asking = await submit(tenant, "approve", {"pause": 1})
    holding = admin_db.transaction()
    await holding.start()
    try:
        await admin_db.execute("LOCK TABLE gateway.inbox IN SHARE MODE")
        held = await admin_db.fetchval(
            "SELECT status FROM gateway.jobs WHERE id = $1", uuid.UUID(asking)
        )
        assert held in ("queued", "running"), held  # the question comes after the lock
        async with aconnect_sse(tenant.http, "GET", f"/v1/jobs/{asking}/stream") as source:
            async for sse in source.aiter_sse():
                if sse.data and orjson.loads(sse.data)["type"] == "input_requested":
                    shown = orjson.loads(sse.data)["payload"]
                    break
        read = asyncio.ensure_future(job(tenant, asking))
        listed = asyncio.ensure_future(tenant.http.get("/v1/jobs", params={"status": "waiting"}))
        answer = asyncio.ensure_future(
            tenant.http.post(
                f"/v1/jobs/{asking}/input",
                json={"answer": {"name": "Ada"}, "request_id": shown["request_id"]},
            )
        )
        await asyncio.wait({read, listed, answer}, timeout=0.5)  # a stale read would be back
    finally:
        await holding.rollback()
    assert (await read)["status"] == "waiting"
    assert (await read)["input_request"]["request_id"] == shown["request_id"]
    assert asking in [j["id"] for j in (await listed).json()["data"]], (await listed).text
    assert (await answer).status_code == 200, (await answer).text
    assert (await status(tenant, asking, "succeeded"))["result"]["approved_by"] == "Ada"


async def test_a_question_is_delivered_as_the_waiting_for_input_webhook(tenant: Tenant) -> None:
    async with webhook_receiver() as receiver:
        endpoint = await tenant.http.post(
            "/v1/webhooks",
            json={"url": f"{receiver.url}/asks", "events": ["job.waiting_for_input"]},
        )
        assert endpoint.status_code == 201, endpoint.text
        try:
            asking = await submit(tenant, "approve")
            try:
                (request,) = await receiver.wait_for("/asks", 1, timeout=60)
            except TimeoutError:
                hook = endpoint.json()["id"]
                made = await tenant.http.get(f"/v1/webhooks/{hook}/deliveries")
                raise AssertionError(
                    f"no delivery arrived: the job is {await job(tenant, asking)}; "
                    f"the endpoint's deliveries are {made.text}"
                ) from None
            delivered = Webhook(endpoint.json()["secret"]).verify(request.body, request.headers)
            assert delivered["type"] == "job.waiting_for_input"
            data = delivered["data"]
            assert data["id"] == asking and data["status"] == "waiting"
            assert data["input_request"]["prompt"] == "Who approves the spend?"
            assert data["input_request"]["answer_schema"]["required"] == ["name"]
        finally:
            await tenant.http.delete(f"/v1/webhooks/{endpoint.json()['id']}")
        await tenant.http.post(f"/v1/jobs/{asking}/cancel")


async def test_a_publishable_key_answers_the_questions_of_its_own_jobs_only(
    tenant: Tenant, platform: Platform
) -> None:
    minted = await tenant.http.post("/v1/keys", json={"kind": "publishable", "name": "app"})
    assert minted.status_code == 201, minted.text
    headers = {"Authorization": f"Bearer {minted.json()['api_key']}"}
    theirs = await submit(tenant, "approve")
    async with httpx.AsyncClient(base_url=platform.url, headers=headers) as app:
        submitted = await app.post("/v1/jobs", json={"skill": "approve", "inputs": {}})
        assert submitted.status_code == 201, submitted.text
        mine = submitted.json()["id"]
        await status(tenant, mine, "waiting")
        await status(tenant, theirs, "waiting")
        refused = await app.post(f"/v1/jobs/{theirs}/input", json={"answer": {"name": "x"}})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        answered = await app.post(f"/v1/jobs/{mine}/input", json={"answer": {"name": "End user"}})
        assert answered.status_code == 200, answered.text
    assert (await status(tenant, mine, "succeeded"))["result"]["approved_by"] == "End user"
    assert (await job(tenant, theirs))["status"] == "waiting"
    await tenant.http.post(f"/v1/jobs/{theirs}/cancel")
