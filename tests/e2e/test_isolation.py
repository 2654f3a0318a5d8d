"""Tenant isolation end to end: an agent's ``bash`` and a function job, each run by a tenant
that tries to reach beyond its own job, while other jobs (of another workspace and of its own)
are running. Neither reads another job's ``/proc/<pid>/environ`` (where its job token is),
another workspace's drive by its path, or the platform's ``.puras/`` home. An agent's bash
sees its skillpack's secrets and only its own processes, and what one step leaves in its
sandbox is there for the next step and for no other job."""

from __future__ import annotations

import json
import os
import shlex
import uuid
from typing import Any

import pytest
from puras_sandbox import bwrap_available
from puras_testing import eventually
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

SNOOP = """
    import json, os, sys

    def attempt(fn):
        try:
            value = fn()
            return ["reachable", sorted(value) if isinstance(value, list) else str(value)[:300]]
        except Exception as exc:
            return ["refused", type(exc).__name__]

    def look(inputs):
        jobs, processes = set(), 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            processes += 1
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    environ = f.read().split(b"\\0")
            except OSError:
                continue
            for item in environ:
                if item.startswith(b"PURAS_JOB_ID="):
                    jobs.add(item.split(b"=", 1)[1].decode())
        return {
            "me": os.environ.get("PURAS_JOB_ID"),
            "jobs": sorted(jobs),
            "processes": processes,
            "secret": os.environ.get("SPY_SECRET"),
            "uid": os.getuid(),
            "other_drive_file": attempt(lambda: open(inputs["other_drive_file"]).read()),
            "other_drive_dir": attempt(lambda: os.listdir(inputs["other_drive_dir"])),
            "platform_home": attempt(lambda: os.listdir(inputs["home"])),
            "drives": attempt(lambda: os.listdir(inputs["drives"])),
            "platform_credentials": attempt(lambda: open(inputs["credentials"]).read()),
        }

    def run(inputs):
        return look(inputs)

    if __name__ == "__main__":
        print(json.dumps(look(json.loads(sys.argv[1]))))
"""

SLEEPER = """
    import time

    def run(inputs):
        time.sleep(inputs.get("seconds", 60))
        return "woke"
"""


def project() -> dict[str, str]:
    return {
        "skills/spy/skill.yaml": "description: Look around.\nentrypoint: SKILL.md\n",
        "skills/spy/SKILL.md": "You look around with bash.\n",
        "skills/spy/snoop.py": SNOOP,
        "skills/fsnoop/skill.yaml": "entrypoint: snoop.py:run\n",
        "skills/fsnoop/snoop.py": SNOOP,
        "skills/sleeper/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 120\n",
        "skills/sleeper/main.py": SLEEPER,
    }


async def submit(tenant: Tenant, skill: str, inputs: dict[str, Any]) -> str:
    response = await tenant.http.post("/v1/jobs", json={"skill": skill, "inputs": inputs})
    assert response.status_code in (200, 201, 202), response.text
    job_id: str = response.json()["id"]
    return job_id


async def running(tenant: Tenant, job_id: str) -> None:
    async def probe() -> bool | None:
        job = (await tenant.http.get(f"/v1/jobs/{job_id}")).json()
        assert job["status"] in ("queued", "running"), job
        return True if job["status"] == "running" else None

    await eventually(probe, timeout=60, what=f"job {job_id} running")


def tool_output(text: str) -> str:
    assert text.startswith("exit code: 0\n"), text
    return text.split("output:\n", 1)[1]


@pytest.fixture
def sandboxed() -> None:
    uid = 65534 if os.geteuid() == 0 else None
    if not bwrap_available(uid, uid):
        pytest.skip("without bubblewrap tenant code is not isolated (docs/isolation.md)")


async def test_neither_an_agents_bash_nor_a_function_job_reaches_beyond_its_own_job(
    platform: Platform, model_provider: ModelStub, sandboxed: None
) -> None:
    victim = await platform.tenant(f"iso-victim-{uuid.uuid4().hex[:8]}")
    spy = await platform.tenant(f"iso-spy-{uuid.uuid4().hex[:8]}")
    for tenant in (victim, spy):
        assert (await tenant.push(project())).status_code == 201
    secret = f"spy-secret-{uuid.uuid4().hex}"
    put = await spy.http.put("/v1/secrets/SPY_SECRET", json={"value": secret})
    assert put.status_code == 200, put.text
    up = await victim.http.post(
        "/v1/drive/upload", files={"file": ("private.txt", b"the victim's data", "text/plain")}
    )
    assert up.status_code == 201, up.text
    home = platform.config.home
    victim_drive = home / "drive" / victim.id
    inputs = {
        "other_drive_file": str(victim_drive / up.json()["drive_path"]),
        "other_drive_dir": str(victim_drive),
        "home": str(home),
        "drives": str(home / "drive"),
        "credentials": str(home / "credentials.json"),
    }
    (home / "credentials.json").write_text('{"nats": "platform-password"}')

    # Jobs that run meanwhile: one of the other workspace, one of the spy's own.
    sleepers = [await submit(victim, "sleeper", {}), await submit(spy, "sleeper", {})]
    for tenant, job_id in zip((victim, spy), sleepers, strict=True):
        await running(tenant, job_id)
    try:
        marker = f"spy-{uuid.uuid4().hex}"
        look = f"cd $PURAS_DEPLOYMENT_ROOT/skills/spy && python3 snoop.py {shlex.quote(json.dumps(inputs))}"
        script = model_provider.script(
            Reply(tool_calls=[Call("bash", {"command": f"{look}; echo kept > /tmp/state"})]),
            Reply(tool_calls=[Call("bash", {"command": "cat /tmp/state"})]),
            Reply(text="done"),
            match=marker,
        )
        agent = await spy.run("spy", {"prompt": f"look around {marker}"}, timeout=60)
        function = await spy.run("fsnoop", inputs, timeout=60)
        other_marker = f"spy-{uuid.uuid4().hex}"
        other_script = model_provider.script(
            Reply(tool_calls=[Call("bash", {"command": "cat /tmp/state; ls /tmp"})]),
            Reply(text="done"),
            match=other_marker,
        )
        other = await spy.run("spy", {"prompt": f"look around {other_marker}"}, timeout=60)
    finally:
        for tenant, job_id in zip((victim, spy), sleepers, strict=True):
            await tenant.http.post(f"/v1/jobs/{job_id}/cancel")

    assert agent["status"] == "succeeded", agent
    requests = model_provider.requests_for(script)
    seen = json.loads(tool_output(requests[1].last_tool_results()[0]["text"]))
    assert function["status"] == "succeeded", function
    for who, found in (("agent bash", seen), ("function job", function["result"])):
        assert set(found["jobs"]) <= {found["me"]}, (who, found["jobs"], sleepers)
        for name in ("other_drive_file", "other_drive_dir", "platform_credentials"):
            assert found[name][0] == "refused", (who, name, found[name])
        # Of the platform's home, only the folders leading to what the job may see are there,
        # empty but for that: its own workspace's drive folder, its own workdir.
        assert found["drives"] in (["refused", "FileNotFoundError"], ["reachable", [spy.id]])
        listed = found["platform_home"][1] if found["platform_home"][0] == "reachable" else []
        assert set(listed) <= {"drive", "agent-runner", "runner"}, (who, listed)
    if os.geteuid() == 0:  # a uid per workspace, owning its drive folder alone
        victim_folder = victim_drive.stat()
        assert victim_folder.st_mode & 0o777 == 0o700
        assert seen["uid"] == function["result"]["uid"] != victim_folder.st_uid
        assert seen["uid"] == (home / "drive" / spy.id).stat().st_uid
    # bash has its skillpack's secret, and sees the processes of its own job only: the
    # sandbox's init, its parent, the bash and the python it ran.
    assert seen["secret"] == secret and seen["me"] == agent["id"]
    assert seen["processes"] <= 4, seen
    # What a step leaves in its sandbox is there for the next step of the job ...
    assert tool_output(requests[2].last_tool_results()[0]["text"]) == "kept\n"
    # ... and for no other job.
    assert other["status"] == "succeeded", other
    text = model_provider.requests_for(other_script)[1].last_tool_results()[0]["text"]
    assert "No such file" in text and "kept" not in text, text
