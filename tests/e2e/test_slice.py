"""The first slice end to end over HTTP: a workspace and its key, a pushed bundle, a job through
gateway → scheduler → function runner → gateway, every service a real process."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from nats.js import JetStreamContext
from puras_common.events import parse_event
from puras_testing import eventually
from puras_testing.platform import ECHO_PROJECT, Platform, Tenant, project_zip

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROJECT = {
    **ECHO_PROJECT,
    "skills/boom/skill.yaml": "entrypoint: main.py:run\n",
    "skills/boom/main.py": """
        def helper(n):
            raise ValueError(f"bad input {n}")

        def run(inputs):
            return helper(inputs.get("n", 1))
        """,
    "skills/chatty/skill.yaml": "entrypoint: main.py:run\n",
    "skills/chatty/main.py": """
        import sys

        def run(inputs):
            for i in range(3):
                print(f"line {i}")
            print("to stderr", file=sys.stderr)
            return {"lines": 3}
        """,
    "skills/notjson/skill.yaml": "entrypoint: main.py:run\n",
    "skills/notjson/main.py": """
        def run(inputs):
            return {"when": object()}
        """,
    "skills/big/skill.yaml": "entrypoint: main.py:run\n",
    "skills/big/main.py": """
        def run(inputs):
            return {"size": len(inputs["blob"]), "blob": inputs["blob"] + "!"}
        """,
    "skills/hello/skill.yaml": "description: An agent.\nentrypoint: SKILL.md\n",
    "skills/hello/SKILL.md": "You are helpful.\n",
}


@pytest.fixture(scope="module")
async def tenant(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"slice-{uuid.uuid4().hex[:8]}")
    response = await tenant.push(PROJECT, notes="first cut")
    assert response.status_code == 201, response.text
    return tenant


async def test_workspace_key_is_shown_once_and_stored_as_prefix_and_hash(
    platform: Platform, admin_db: asyncpg.Connection
) -> None:
    tenant = await platform.tenant(f"keys-{uuid.uuid4().hex[:8]}")
    prefix, secret = tenant.api_key.removeprefix("puras_live_").split(".")
    assert len(prefix) == 8 and len(secret) == 32
    row = await admin_db.fetchrow("SELECT * FROM gateway.api_keys WHERE prefix = $1", prefix)
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).digest()
    stored = " ".join(str(v) for v in row.values())
    assert secret not in stored


async def test_every_kind_of_bad_key_gets_a_401_saying_which(
    platform: Platform, tenant: Tenant, admin_db: asyncpg.Connection
) -> None:
    async with httpx.AsyncClient(base_url=platform.url) as http:

        async def code(headers: dict[str, str]) -> tuple[int, str, str]:
            r = await http.get(f"/v1/jobs/{uuid.uuid4()}", headers=headers)
            return r.status_code, r.json()["error"]["code"], r.json()["error"]["message"]

        assert (await code({}))[:2] == (401, "missing_key")
        assert (await code({"Authorization": "Bearer puras_live_abc"}))[:2] == (
            401,
            "malformed_key",
        )
        no_dot = tenant.api_key.replace(".", "")
        status, err, message = await code({"Authorization": f"Bearer {no_dot}"})
        assert (status, err) == (401, "malformed_key") and "dot" in message
        prefix = tenant.api_key.split(".")[0]
        wrong = f"{prefix}.{'x' * 32}"
        assert (await code({"Authorization": f"Bearer {wrong}"}))[:2] == (401, "invalid_key")
        revoked = await platform.tenant(f"revoked-{uuid.uuid4().hex[:8]}")
        await admin_db.execute(
            "UPDATE gateway.api_keys SET revoked_at = now() WHERE prefix = $1",
            revoked.api_key.split(".")[0].removeprefix("puras_live_"),
        )
        assert (await code({"Authorization": f"Bearer {revoked.api_key}"}))[:2] == (
            401,
            "revoked_key",
        )


async def test_push_lists_the_discovered_skills(tenant: Tenant) -> None:
    response = await tenant.push(PROJECT, notes="second cut")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["version"] == 2 and body["status"] == "ready" and body["active"] is True
    kinds = {s["name"]: s["kind"] for s in body["skills"]}
    assert kinds == {
        "big": "function",
        "boom": "function",
        "chatty": "function",
        "echo": "function",
        "hello": "agent",
        "notjson": "function",
    }


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"README.md": "no skills"}, "skills/: no skills/ directory"),
        (
            {"skills/echo/skill.yaml": "entrypoint: main.py:run\n"},
            "skills/echo/skill.yaml: entrypoint: main.py does not exist",
        ),
        (
            {
                "skills/Bad_Name/skill.yaml": "entrypoint: SKILL.md\n",
                "skills/Bad_Name/SKILL.md": "x",
            },
            "skill name 'Bad_Name'",
        ),
        ({"skills/a/skill.yaml": "entrypoint: [unclosed\n"}, "skills/a/skill.yaml: not valid YAML"),
        (
            {
                "skills/a/skill.yaml": "entrypoint: main.py:go\n",
                "skills/a/main.py": "def run(i): return i\n",
            },
            "main.py defines no function 'go'",
        ),
        (
            {"skills/a/skill.yaml": "entrypoint: main\n"},
            "skills/a/skill.yaml: entrypoint: 'main' must look like 'main.py:run'",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\nsurprise: 1\n",
                "skills/a/SKILL.md": "x",
            },
            "skills/a/skill.yaml: surprise: unknown field",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ninput_schema: {type: bogus}\n",
                "skills/a/SKILL.md": "x",
            },
            "skills/a/skill.yaml: input_schema: not a valid JSON Schema",
        ),
    ],
)
async def test_bad_bundles_are_refused_naming_file_and_problem(
    tenant: Tenant, files: dict[str, str], expected: str
) -> None:
    response = await tenant.push(files)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_bundle"
    assert expected in error["message"], error["message"]
    assert error["details"] and all(
        {"file", "field", "message"} <= set(d) for d in error["details"]
    )


async def test_zip_slip_and_non_zip_bundles_are_refused(tenant: Tenant) -> None:
    evil = project_zip({**ECHO_PROJECT, "../escape.txt": "x"})
    response = await tenant.push(evil)
    assert response.status_code == 400 and "'..' in path" in response.json()["error"]["message"]
    response = await tenant.push(b"this is not a zip")
    assert (
        response.status_code == 400 and "not a zip archive" in response.json()["error"]["message"]
    )


async def test_echo_job_runs_end_to_end(tenant: Tenant) -> None:
    response = await tenant.http.post("/v1/jobs", json={"skill": "echo", "inputs": {"text": "hi"}})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued" and response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["skill_name"] == "echo" and job["workspace"] == tenant.slug

    async def finished() -> dict[str, Any] | None:
        got = (await tenant.http.get(f"/v1/jobs/{job['id']}")).json()
        return got if got["status"] in ("succeeded", "failed") else None

    done = await eventually(finished, timeout=30, what="the echo job to finish")
    assert done["status"] == "succeeded", done
    assert done["result"] == {"echoed": "hi"}
    assert (
        done["attempt"] == 1
        and done["version"] >= 1
        and done["deployment_id"] == job["deployment_id"]
    )
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]


async def test_wait_true_returns_the_terminal_job(tenant: Tenant) -> None:
    job = await tenant.run("echo", {"text": "sync"})
    assert job["status"] == "succeeded" and job["result"] == {"echoed": "sync"}


async def test_json_body_without_content_type_is_accepted(tenant: Tenant) -> None:
    response = await tenant.http.post(
        "/v1/jobs?wait=true",
        content=b'{"skill":"echo","inputs":{"text":"curl"}}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and response.json()["result"] == {"echoed": "curl"}


async def test_an_exception_fails_the_job_with_type_message_and_traceback(tenant: Tenant) -> None:
    job = await tenant.run("boom", {"n": 7})
    assert job["status"] == "failed"
    assert job["error"] == "ValueError: bad input 7"
    detail = job["error_detail"]
    assert detail["type"] == "ValueError" and detail["message"] == "bad input 7"
    assert "in helper" in detail["traceback"] and "raise ValueError" in detail["traceback"]


async def test_a_result_that_is_not_json_fails_clearly(tenant: Tenant) -> None:
    job = await tenant.run("notjson", {})
    assert job["status"] == "failed"
    assert "ResultNotJSON" in job["error"] and "object" in job["error"]


async def test_printed_output_becomes_log_events(tenant: Tenant, js: JetStreamContext) -> None:
    job = await tenant.run("chatty", {})
    assert job["status"] == "succeeded"
    sub = await js.pull_subscribe(f"job.{job['id']}.log", stream="JOBS")
    msgs = await sub.fetch(10, timeout=2)
    logs = [parse_event(m.data).payload for m in msgs]
    stdout = "\n".join(p.text for p in logs if p.stream == "stdout")
    assert stdout == "line 0\nline 1\nline 2"
    assert [p.text for p in logs if p.stream == "stderr"] == ["to stderr"]


async def test_input_schema_is_enforced_with_pointers(tenant: Tenant) -> None:
    response = await tenant.http.post("/v1/jobs", json={"skill": "echo", "inputs": {"text": 5}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == [{"pointer": "/inputs/text", "message": "5 is not of type 'string'"}]


async def test_unknown_skill_and_bad_bodies_get_clear_4xx(tenant: Tenant) -> None:
    r = await tenant.http.post("/v1/jobs", json={"skill": "nope", "inputs": {}})
    assert r.status_code == 404 and "skill 'nope' not found" in r.json()["error"]["message"]
    r = await tenant.http.post("/v1/jobs", json={"skill": "echo", "input": {}})
    assert r.status_code == 400 and r.json()["error"]["details"][0]["pointer"] == "/input"
    r = await tenant.http.post("/v1/jobs", content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = await tenant.http.post(
        "/v1/jobs?wait=true&timeout=61", json={"skill": "echo", "inputs": {"text": "x"}}
    )
    assert r.status_code == 400 and "1 and 60" in r.json()["error"]["message"]
    r = await tenant.http.get("/v1/jobs/not-a-uuid")
    assert r.status_code == 404


async def test_body_over_1_mib_is_refused_naming_the_drive(tenant: Tenant) -> None:
    blob = "x" * (1024 * 1024)
    response = await tenant.http.post("/v1/jobs", json={"skill": "big", "inputs": {"blob": blob}})
    assert response.status_code == 413
    message = response.json()["error"]["message"]
    assert "1 MiB" in message and "/v1/drive/upload" in message


async def test_large_inputs_and_results_travel_as_references(
    tenant: Tenant, js: JetStreamContext
) -> None:
    blob = "y" * (300 * 1024)  # over the 256 KiB inline limit, under the 1 MiB body limit
    job = await tenant.run("big", {"blob": blob})
    assert job["status"] == "succeeded", job
    assert job["result"] == {"size": len(blob), "blob": blob + "!"}
    for suffix, field in (("submitted", "inputs_ref"), ("succeeded", "result_ref")):
        sub = await js.pull_subscribe(f"job.{job['id']}.{suffix}", stream="JOBS")
        (msg,) = await sub.fetch(1, timeout=2)
        assert len(msg.data) < 4096, f"{suffix} carried the bytes"
        assert getattr(parse_event(msg.data).payload, field).startswith("payloads/")
