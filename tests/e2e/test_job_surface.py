"""The job surface over HTTP: call modes, events (paged and SSE, with resume and late attach),
listing, cancellation, timeouts, idempotency, feedback, skills and the OpenAPI document."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from puras_common.bus import publish
from puras_common.envelope import parse_event
from puras_pricing import left_behind
from puras_testing import eventually
from puras_testing.metrics import scrape, value
from puras_testing.platform import ECHO_PROJECT, Platform, Tenant
from puras_testing.sse import read_sse

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROJECT = {
    **ECHO_PROJECT,
    "skills/chatty/skill.yaml": "entrypoint: main.py:run\n",
    "skills/chatty/main.py": """
        import time

        def run(inputs):
            for i in range(inputs.get("lines", 3)):
                print(f"line {i}", flush=True)
                time.sleep(inputs.get("pause", 0))
            return {"lines": inputs.get("lines", 3)}
        """,
    "skills/sleeper/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 60\n",
    "skills/sleeper/main.py": """
        import subprocess, sys, time

        def run(inputs):
            # A grandchild too, to show cancellation leaves nothing behind.
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", inputs["marker"]])
            print("sleeping", flush=True)
            time.sleep(inputs.get("seconds", 300))
            return {"slept": True}
        """,
    "skills/slow/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 2\n",
    "skills/slow/main.py": "import time\n\ndef run(inputs):\n    time.sleep(30)\n",
    "skills/liar/skill.yaml": """
        entrypoint: main.py:run
        output_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
        """,
    "skills/liar/main.py": "def run(inputs):\n    return {'n': 'not a number'}\n",
}


@pytest.fixture(scope="module")
async def tenant(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"surface-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    return tenant


async def test_stream_true_sends_every_event_then_the_end_frame(tenant: Tenant) -> None:
    events, end, response = await read_sse(
        tenant.http,
        "POST",
        "/v1/jobs?stream=true",
        json={"skill": "chatty", "inputs": {"lines": 3}},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    job_id = response.headers["x-puras-job-id"]
    types = [data["type"] for _, data in events]
    assert types[0] == "queued" and types[1] == "started" and types[-1] == "succeeded"
    assert (
        "".join(d["payload"]["text"] + "\n" for _, d in events if d["type"] == "log")
        == "line 0\nline 1\nline 2\n"
    )
    ids = [int(i) for i, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(int(i) == d["id"] for i, d in events)
    assert end is not None and end["status"] == "succeeded" and end["job"]["id"] == job_id
    assert end["job"]["result"] == {"lines": 3}


async def test_paged_events_resume_and_late_attach_agree_id_for_id(tenant: Tenant) -> None:
    job = await tenant.run("chatty", {"lines": 5})
    url = f"/v1/jobs/{job['id']}"
    full, end, _ = await read_sse(tenant.http, "GET", f"{url}/stream")  # attached after it finished
    assert end is not None and end["status"] == "succeeded"
    page = (await tenant.http.get(f"{url}/events")).json()
    assert [e["id"] for e in page["events"]] == [int(i) for i, _ in full]
    assert [e["type"] for e in page["events"]] == [d["type"] for _, d in full]
    assert page["terminal"] is True

    middle = int(full[2][0])
    resumed, end2, _ = await read_sse(
        tenant.http, "GET", f"{url}/stream", headers={"Last-Event-ID": str(middle)}
    )
    assert [int(i) for i, _ in resumed] == [int(i) for i, _ in full[3:]]
    assert end2 is not None
    by_query, _, _ = await read_sse(tenant.http, "GET", f"{url}/stream?after_id={middle}")
    assert [i for i, _ in by_query] == [i for i, _ in resumed]

    first = (await tenant.http.get(f"{url}/events?limit=2")).json()
    assert len(first["events"]) == 2 and first["terminal"] is False
    rest = (await tenant.http.get(f"{url}/events?after_id={first['next_after_id']}")).json()
    assert [e["id"] for e in first["events"] + rest["events"]] == [e["id"] for e in page["events"]]


async def test_a_stream_resumed_at_or_after_its_end_ends_at_once(tenant: Tenant) -> None:
    job = await tenant.run("chatty", {"lines": 2})
    url = f"/v1/jobs/{job['id']}"
    last = (await tenant.http.get(f"{url}/events")).json()["events"][-1]
    assert last["type"] == "succeeded"
    for kw in (
        {"headers": {"Last-Event-ID": str(last["id"])}},
        {"params": {"after_id": last["id"] + 1000}},
    ):
        # Without an answer the stream would stay open with pings (every 1 s here) forever.
        events, end, _ = await asyncio.wait_for(
            read_sse(tenant.http, "GET", f"{url}/stream", **kw), 10
        )
        assert events == []
        assert end is not None and end["status"] == "succeeded" and end["job"]["id"] == job["id"]


async def test_a_finished_job_past_the_streams_retention_still_ends_its_stream(
    tenant: Tenant, js: JetStreamContext
) -> None:
    """A job older than the JOBS stream's retention has lost its stored events, its end among
    them; the read model still holds its end, so its stream ends at once with the job, instead
    of waiting for live events that will never come."""
    job = await tenant.run("echo", {"text": "aged out"})
    stored = (await js.stream_info("JOBS", subjects_filter=f"job.{job['id']}.>")).state.subjects
    assert stored and f"job.{job['id']}.succeeded" in stored
    ended = parse_event((await js.get_last_msg("JOBS", f"job.{job['id']}.succeeded")).data)
    for subject in stored:  # as max-age would
        await js.purge_stream("JOBS", subject=subject)
    # But for the job's compute row, which its end carried and a later test's rebuild of the
    # ledger reads: it stays, as a usage event of its own recorded when the end was.
    (usage,) = left_behind(ended.payload, ended, producer="test")
    await publish(js, [usage.model_copy(update={"occurred_at": ended.occurred_at})])
    for kw in ({}, {"headers": {"Last-Event-ID": "1"}}):
        events, end, _ = await asyncio.wait_for(
            read_sse(tenant.http, "GET", f"/v1/jobs/{job['id']}/stream", **kw), 10
        )
        assert [data["type"] for _, data in events] in ([], ["usage"])
        assert end is not None and end["status"] == "succeeded"
        assert end["job"]["result"] == {"echoed": "aged out"}


async def test_a_resume_point_past_any_event_id_is_refused_where_it_was_given(
    tenant: Tenant,
) -> None:
    """Event ids are JetStream sequences and PostgreSQL bigints: a resume point past 2**63 - 1
    is a 400 naming the parameter, at the edge and far beyond it, never a failed stream."""
    job = await tenant.run("echo", {"text": "edge"})
    url = f"/v1/jobs/{job['id']}"
    edge = 2**63 - 1
    for too_big in (str(edge + 1), "9" * 30, "9" * 5000):
        for path, kw in (
            (f"{url}/events?after_id={too_big}", {}),
            (f"{url}/stream?after_id={too_big}", {}),
            (f"{url}/stream", {"headers": {"Last-Event-ID": too_big}}),
        ):
            response = await tenant.http.get(path, **kw)
            assert response.status_code == 400, (path[:80], response.text[:300])
            pointer = response.json()["error"]["details"][0]["pointer"]
            assert pointer in ("/query/after_id", "/header/Last-Event-ID")
    # The largest id itself is a resume point: past the job's end, so nothing more to read.
    page = (await tenant.http.get(f"{url}/events?after_id={edge}")).json()
    assert page["events"] == [] and page["terminal"] is True
    events, end, _ = await read_sse(
        tenant.http, "GET", f"{url}/stream", headers={"Last-Event-ID": str(edge)}
    )
    assert events == [] and end is not None and end["status"] == "succeeded"


async def test_a_live_viewer_sees_events_as_they_happen(tenant: Tenant) -> None:
    job = (
        await tenant.http.post(
            "/v1/jobs", json={"skill": "chatty", "inputs": {"lines": 4, "pause": 0.3}}
        )
    ).json()
    events, end, _ = await read_sse(tenant.http, "GET", f"/v1/jobs/{job['id']}/stream")
    assert [d["type"] for _, d in events].count("log") >= 1 and end["status"] == "succeeded"  # type: ignore[index]


async def test_live_frames_written_by_the_fan_out_reach_every_viewer_whole_and_in_order(
    tenant: Tenant, platform: Platform
) -> None:
    """Two viewers of a job that logs slowly. Each line arrives while both streams sleep, so
    the gateway's subscription writes it to both connections itself, past the stream's task;
    the clients see exactly the job's stored events, in order, then the end."""
    before = value(await scrape(platform, "gateway"), "puras_sse_frames_total", path="direct")
    job = (
        await tenant.http.post(
            "/v1/jobs", json={"skill": "chatty", "inputs": {"lines": 5, "pause": 0.3}}
        )
    ).json()
    url = f"/v1/jobs/{job['id']}/stream"
    seen = await asyncio.gather(*(read_sse(tenant.http, "GET", url) for _ in range(2)))
    stored = (await tenant.http.get(f"/v1/jobs/{job['id']}/events")).json()["events"]
    for events, end, _ in seen:
        assert [int(i) for i, _ in events] == [e["id"] for e in stored]
        assert [d["payload"].get("text") for _, d in events if d["type"] == "log"] == [
            f"line {i}" for i in range(5)
        ]
        assert end is not None and end["status"] == "succeeded"
    direct = value(await scrape(platform, "gateway"), "puras_sse_frames_total", path="direct")
    assert direct - before >= 2 * 3, (before, direct)  # most lines, to both viewers


async def test_a_stream_pings_only_after_a_heartbeat_of_silence(tenant: Tenant) -> None:
    """Internal events (a dispatch, say) that reach a stream while it is busy are dropped, not
    answered with a heartbeat: a stream sends ``: ping`` only after a heartbeat's silence (one
    second on this platform), so a job that ends sooner is streamed without one."""
    for _ in range(5):
        started = asyncio.get_running_loop().time()
        async with tenant.http.stream(
            "POST", "/v1/jobs?stream=true", json={"skill": "echo", "inputs": {"text": "p"}}
        ) as response:
            body = (await response.aread()).decode()
        elapsed = asyncio.get_running_loop().time() - started
        assert "event: end" in body
        assert body.count(": ping") <= int(elapsed), (elapsed, body)


async def test_call_mode_arguments_are_checked(tenant: Tenant) -> None:
    body = {"skill": "echo", "inputs": {"text": "x"}}
    for query, fragment in (
        ("wait=true&stream=true", "mutually exclusive"),
        ("wait=true&timeout=0", "1 and 60"),
        ("wait=true&timeout=61", "1 and 60"),
        ("timeout=5", "only meaningful with wait=true"),
    ):
        response = await tenant.http.post(f"/v1/jobs?{query}", json=body)
        assert response.status_code == 400 and fragment in response.json()["error"]["message"], (
            query
        )
    edge = await tenant.http.post("/v1/jobs?wait=true&timeout=1", json=body)
    assert edge.status_code == 200


async def test_what_a_wait_answers_is_readable_straight_after(tenant: Tenant) -> None:
    # A client told "succeeded" reads the same job, and its whole history, with its next request.
    for _ in range(10):
        job = await tenant.run("chatty", {"lines": 3})
        assert job["status"] == "succeeded"
        again = (await tenant.http.get(f"/v1/jobs/{job['id']}")).json()
        assert (again["status"], again["result"]) == ("succeeded", job["result"])
        page = (await tenant.http.get(f"/v1/jobs/{job['id']}/events")).json()
        assert page["terminal"] is True and page["events"][-1]["type"] == "succeeded"
        logged = "".join(e["payload"]["text"] + "\n" for e in page["events"] if e["type"] == "log")
        assert logged == "line 0\nline 1\nline 2\n"


async def test_wait_returns_the_current_row_at_timeout(tenant: Tenant) -> None:
    response = await tenant.http.post(
        "/v1/jobs?wait=true&timeout=1",
        json={"skill": "sleeper", "inputs": {"marker": "x", "seconds": 3}},
    )
    assert response.status_code == 200 and response.json()["status"] in ("queued", "running")


async def test_jobs_are_listed_newest_first_with_filters_and_cursors(platform: Platform) -> None:
    tenant = await platform.tenant(f"list-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    ids = [(await tenant.run("echo", {"text": str(i)}))["id"] for i in range(5)]
    await tenant.run("liar", {})
    listed = (await tenant.http.get("/v1/jobs?limit=200")).json()
    assert [j["id"] for j in listed["data"]][1:] == list(reversed(ids))
    failed = (await tenant.http.get("/v1/jobs?status=failed")).json()["data"]
    assert [j["skill_name"] for j in failed] == ["liar"]
    seen, cursor = [], None
    while True:
        page = (
            await tenant.http.get(
                "/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
            )
        ).json()
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [j["id"] for j in listed["data"]]
    for bad in ("limit=0", "limit=201", "status=done", "cursor=%%%"):
        response = await tenant.http.get(f"/v1/jobs?{bad}")
        assert response.status_code == 400, bad
    other = await platform.tenant(f"other-{uuid.uuid4().hex[:8]}")
    assert (await other.http.get("/v1/jobs")).json()["data"] == []
    assert (await other.http.get(f"/v1/jobs/{ids[0]}")).status_code == 404


async def test_output_schema_is_enforced_on_the_result(tenant: Tenant) -> None:
    job = await tenant.run("liar", {})
    assert job["status"] == "failed"
    assert (
        job["error"]
        == "result does not match the output_schema: 'not a number' is not of type 'integer' at /result/n"
    )


async def test_an_overrun_fails_naming_the_limit(tenant: Tenant) -> None:
    job = await tenant.run("slow", {}, timeout=20)
    assert job["status"] == "failed"
    assert "exceeded its timeout of 2 s" in job["error"] and job["error_detail"] == {
        "timeout_seconds": 2
    }


def processes_with(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


async def test_cancelling_a_running_job_stops_it_and_leaves_no_process(tenant: Tenant) -> None:
    marker = f"puras-cancel-{uuid.uuid4().hex}"
    job = (
        await tenant.http.post("/v1/jobs", json={"skill": "sleeper", "inputs": {"marker": marker}})
    ).json()

    async def running() -> bool:
        return (await tenant.http.get(f"/v1/jobs/{job['id']}")).json()[
            "status"
        ] == "running" and bool(processes_with(marker))

    await eventually(running, timeout=20, what="the job to run")
    response = await tenant.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "running"

    async def cancelled() -> dict[str, Any] | None:
        got = (await tenant.http.get(f"/v1/jobs/{job['id']}")).json()
        return got if got["status"] == "cancelled" else None

    done = await eventually(cancelled, timeout=20, what="the job to be cancelled")
    assert done["error"] == "cancelled while running"
    await eventually(
        lambda: not processes_with(marker), timeout=10, what="every process of the job to be gone"
    )
    again = await tenant.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]["message"]


async def test_cancelling_a_queued_job_is_immediate(platform: Platform) -> None:
    # With billing down, the opening credit admits the submit (402 otherwise) but never reaches
    # the scheduler's balance, so the job is never dispatched.
    await platform.stop_service("billing")
    try:
        broke = await platform.tenant(f"broke-{uuid.uuid4().hex[:8]}", credit_usd="1")
        assert (await broke.push(PROJECT)).status_code == 201
        job = (
            await broke.http.post("/v1/jobs", json={"skill": "echo", "inputs": {"text": "x"}})
        ).json()
        response = await broke.http.post(f"/v1/jobs/{job['id']}/cancel")
    finally:
        await platform.start_service("billing")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    types = [
        e["type"] for e in (await broke.http.get(f"/v1/jobs/{job['id']}/events")).json()["events"]
    ]
    assert types == ["queued", "cancelled"]


async def test_idempotent_submission(tenant: Tenant) -> None:
    key = uuid.uuid4().hex
    body = {"skill": "echo", "inputs": {"text": "once"}}
    first = await tenant.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201
    racing = await asyncio.gather(
        *(
            tenant.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            for _ in range(5)
        )
    )
    assert {r.json()["id"] for r in racing} == {first.json()["id"]}
    assert all(r.status_code == 200 and r.headers["idempotent-replayed"] == "true" for r in racing)
    fresh = uuid.uuid4().hex
    concurrent = await asyncio.gather(
        *(
            tenant.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": fresh})
            for _ in range(5)
        )
    )
    assert len({r.json()["id"] for r in concurrent}) == 1, (
        "concurrent first uses of a key must create one job"
    )
    conflict = await tenant.http.post(
        "/v1/jobs", json={**body, "inputs": {"text": "twice"}}, headers={"Idempotency-Key": key}
    )
    assert (
        conflict.status_code == 409
        and "different request body" in conflict.json()["error"]["message"]
    )


async def test_feedback_upserts_per_end_user_with_stats(tenant: Tenant) -> None:
    job = await tenant.run("echo", {"text": "rate me"})
    url = f"/v1/jobs/{job['id']}/feedback"
    assert (
        await tenant.http.post(url, json={"rating": 1, "end_user_id": "ann"})
    ).status_code == 200
    assert (
        await tenant.http.post(url, json={"rating": -1, "end_user_id": "bob", "comment": "meh"})
    ).status_code == 200
    assert (await tenant.http.post(url, json={"rating": 1, "end_user_id": "bob"})).json()[
        "rating"
    ] == 1  # overwritten
    assert (
        await tenant.http.post(url, json={"comment": "no thumb", "end_user_id": "cy"})
    ).status_code == 200
    listed = (await tenant.http.get(url)).json()["data"]
    assert [f["end_user_id"] for f in listed] == ["cy", "bob", "ann"]
    assert (await tenant.http.get(f"{url}/stats")).json() == {
        "up": 2,
        "down": 0,
        "count": 3,
        "score": 2,
    }
    for bad in (
        {"rating": 0},
        {"rating": 2},
        {"rating": 1, "extra": True},
        {"comment": "x" * 4001},
    ):
        assert (await tenant.http.post(url, json=bad)).status_code == 400, bad


async def test_skills_are_listed_with_their_schemas(tenant: Tenant) -> None:
    skills = {s["name"]: s for s in (await tenant.http.get("/v1/skills")).json()["data"]}
    assert set(skills) == {"echo", "chatty", "sleeper", "slow", "liar"}
    assert (
        skills["echo"]["input_schema"]["required"] == ["text"]
        and skills["echo"]["kind"] == "function"
    )
    assert (await tenant.http.get("/v1/skills?skillpack=nope")).status_code == 404


async def test_openapi_describes_every_endpoint_and_its_errors(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url) as http:
        spec = (await http.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/events",
        "/v1/jobs/{job_id}/stream",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/feedback",
        "/v1/skills",
        "/v1/deployments",
    ):
        assert path in paths, path
    submit = paths["/v1/jobs"]["post"]
    assert {"400", "401", "404", "413", "422"} <= set(submit["responses"])
    assert submit["requestBody"]["content"]["application/json"]["schema"]["required"] == ["skill"]
    assert {p["name"] for p in submit["parameters"]} >= {
        "wait",
        "timeout",
        "stream",
        "Idempotency-Key",
    }


async def test_live_streams_keep_flowing_after_a_burst(tenant: Tenant, platform: Platform) -> None:
    """The gateway's one live subscription is flow-controlled by the server; after a burst of
    events it must still deliver new ones (it stalled once, unable to answer flow control)."""
    import asyncio as aio

    from puras_common.bus import connect_nats
    from puras_common.events import JobLogged
    from puras_common.events.jobs import LoggedPayload

    nc = await connect_nats(platform.infra.nats_url(), name="burst")
    js = nc.jetstream()
    noise = uuid.uuid4()
    futures = [
        await js.publish_async(
            f"job.{noise}.log",
            JobLogged.new(
                LoggedPayload(attempt=1, stream="stdout", text="x" * 2000),
                producer="t",
                job_id=noise,
            ).to_json(),
        )
        for _ in range(20_000)
    ]
    await aio.gather(*futures)
    await nc.close()
    events, end, _ = await aio.wait_for(
        read_sse(
            tenant.http,
            "POST",
            "/v1/jobs?stream=true",
            json={"skill": "chatty", "inputs": {"lines": 2}},
        ),
        60,
    )
    assert [d["type"] for _, d in events][-1] == "succeeded" and end is not None
