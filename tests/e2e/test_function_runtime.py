"""The function runtime end to end: secrets reach the job's environment and nothing else (not
the API, not log events, not the bus, not the platform's logs); a job in its sandbox sees no
other workspace, no platform credential, no other process; no direct network (the egress
proxy is the only way out, when the skill wants the network); limits and the wall-clock timeout kill the job's whole process tree."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from puras_common.events import parse_event
from puras_sandbox import bwrap_available
from puras_testing import eventually
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = f"sk-live-{uuid.uuid4().hex}"

SECRETIVE = {
    "skills/secretive/skill.yaml": "entrypoint: main.py:run\n",
    "skills/secretive/main.py": """
        import hashlib, os, sys
        import puras

        def run(inputs):
            value = puras.secret("API_TOKEN")
            print("calling the API with", value)
            print("and on stderr:", value, file=sys.stderr)
            if inputs.get("fail"):
                raise RuntimeError(f"the API refused {value}")
            try:
                puras.secret("NOT_SET")
                missing = None
            except puras.SecretError as exc:
                missing = str(exc)
            return {
                "sha256": hashlib.sha256(value.encode()).hexdigest(),
                "in_environ": os.environ.get("API_TOKEN") == value,
                "echo": value,
                "missing": missing,
                "default": puras.secret("NOT_SET", "fallback"),
            }
        """,
}


async def log_texts(js: JetStreamContext, job_id: str) -> list[str]:
    sub = await js.pull_subscribe(f"job.{job_id}.log", stream="JOBS")
    try:
        msgs = await sub.fetch(20, timeout=2)
    finally:
        await sub.unsubscribe()
    return [parse_event(m.data).payload.text for m in msgs]


async def test_a_secret_reaches_the_job_and_nothing_else(
    platform: Platform, nc: NATS, js: JetStreamContext
) -> None:
    tenant = await platform.tenant(f"secrets-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(SECRETIVE)).status_code == 201
    seen: list[bytes] = []

    async def capture(msg: Any) -> None:
        seen.append(msg.subject.encode() + b" " + msg.data)

    tap = await nc.subscribe(">", cb=capture)
    try:
        put = await tenant.http.put("/v1/secrets/API_TOKEN", json={"value": SECRET})
        assert put.status_code == 200, put.text
        listed = await tenant.http.get("/v1/secrets")
        ok = await tenant.run("secretive", {})
        failed = await tenant.run("secretive", {"fail": True})
        await nc.flush()
    finally:
        await tap.unsubscribe()

    assert [s["name"] for s in listed.json()["data"]] == ["API_TOKEN"]
    assert ok["status"] == "succeeded", (ok["error"], ok["error_detail"])
    result = ok["result"]
    assert (
        result["sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()
        and result["in_environ"] is True
    )
    assert result["echo"] == "***"  # masked in the result shown
    assert "NOT_SET is not set" in result["missing"] and result["default"] == "fallback"
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: the API refused ***"

    logs = await log_texts(js, ok["id"]) + await log_texts(js, failed["id"])
    assert "calling the API with ***" in logs and "and on stderr: ***" in logs
    got = await tenant.http.get(f"/v1/jobs/{failed['id']}")
    for text in (put.text, listed.text, got.text, str(ok), str(failed), *logs):
        assert SECRET not in text
    needles = (SECRET.encode(), base64.b64encode(SECRET.encode()))
    assert len(seen) > 10 and not any(n in m for n in needles for m in seen)
    assert any(m.startswith(b"svc.deployments.secrets") for m in seen)  # it did travel, sealed
    for service in ("gateway", "deployments", "function-runner", "scheduler"):
        assert SECRET not in platform.logs(service), f"the secret is in the {service} log"


async def test_secrets_follow_the_skillpack_a_public_skill_comes_from(platform: Platform) -> None:
    owner = await platform.tenant(f"sowner-{uuid.uuid4().hex[:8]}")
    caller = await platform.tenant(f"scaller-{uuid.uuid4().hex[:8]}")
    assert (await owner.push(SECRETIVE, skillpack="kit")).status_code == 201
    await owner.http.put("/v1/secrets/API_TOKEN?skillpack=kit", json={"value": SECRET})
    await caller.http.put("/v1/secrets/API_TOKEN", json={"value": "the-callers-own-token"})
    await owner.http.patch("/v1/skillpacks/kit", json={"visibility": "public"})
    job = await caller.run(f"{owner.slug}/kit/secretive", {})
    assert job["status"] == "succeeded", job
    assert job["result"]["sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()
    assert job["result"]["echo"] == "***"  # the caller never sees the owner's value


SNOOP = """
    import os, socket

    def attempt(fn):
        try:
            return ["reachable", str(fn()).replace("\\0", " ")[:300]]
        except Exception as exc:
            return ["refused", type(exc).__name__]

    def run(inputs):
        out = {name: attempt(lambda p=path: open(p).read()) for name, path in inputs["files"].items()}
        out.update({name: attempt(lambda p=path: os.listdir(p)) for name, path in inputs["dirs"].items()})
        out["parent_environ"] = attempt(lambda: open(f"/proc/{os.getppid()}/environ").read())
        out["init_environ"] = attempt(lambda: open("/proc/1/environ").read())
        out["processes"] = len([p for p in os.listdir("/proc") if p.isdigit()])
        out["env"] = sorted(os.environ)
        out["uid"] = os.getuid()
        def connect():
            with socket.create_connection(("127.0.0.1", inputs["port"]), timeout=3):
                return "connected"
        out["gateway"] = attempt(connect)
        return out
"""


def snoop_project() -> dict[str, str]:
    return {
        "skills/snoop/skill.yaml": "entrypoint: main.py:run\n",
        "skills/snoop/main.py": SNOOP,
        "skills/offline/skill.yaml": "entrypoint: main.py:run\nnetwork: false\n",
        "skills/offline/main.py": SNOOP,
    }


async def test_a_job_sees_no_other_workspace_no_credentials_and_no_other_process(
    platform: Platform,
) -> None:
    if not bwrap_available(
        65534 if os.geteuid() == 0 else None, 65534 if os.geteuid() == 0 else None
    ):
        pytest.skip("without bubblewrap jobs are not isolated from each other (docs/isolation.md)")
    victim = await platform.tenant(f"victim-{uuid.uuid4().hex[:8]}")
    snooper = await platform.tenant(f"snoop-{uuid.uuid4().hex[:8]}")
    assert (await victim.push(snoop_project())).status_code == 201
    assert (await victim.run("snoop", {"files": {}, "dirs": {}, "port": 1}))[
        "status"
    ] == "succeeded"
    home = platform.config.home
    victim_work = home / "runner" / "work" / victim.id
    planted = victim_work / "planted.txt"
    planted.write_text("the victim's data")
    planted.chmod(0o644)
    credentials = home / "credentials.json"
    credentials.write_text('{"nats": "platform-password"}')
    credentials.chmod(0o600)
    assert (await snooper.push(snoop_project())).status_code == 201
    inputs = {
        "files": {"other_workspace_file": str(planted), "credentials": str(credentials)},
        "dirs": {
            "other_workspace_dir": str(victim_work),
            "bundles": str(home / "deployments" / "bundles"),
            "other_deployments": str(home / "runner" / "deployments"),
        },
        "port": int(platform.url.rsplit(":", 1)[1]),
    }
    job = await snooper.run("snoop", inputs)
    assert job["status"] == "succeeded", job
    seen = job["result"]
    for name in ("other_workspace_file", "credentials", "other_workspace_dir", "bundles"):
        assert seen[name][0] == "refused", (name, seen[name])
    # Only the job's own deployment is there (the directories leading to it are bound empty).
    assert seen["other_deployments"] == ["reachable", str([job["deployment_id"]])], seen[
        "other_deployments"
    ]
    for name in (
        "parent_environ",
        "init_environ",
    ):  # the sandbox's own processes: empty environments
        assert seen[name][0] == "refused" or "PURAS" not in seen[name][1], (name, seen[name])
    assert seen["processes"] <= 4  # bwrap, the warm parent, its spare, this job: nobody else's
    assert set(seen["env"]) == {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PYTHONUNBUFFERED",
        "PURAS_API_BASE",
        "PURAS_JOB_TOKEN",
        "PURAS_JOB_ID",
        "PURAS_WORKSPACE_ID",
        "PURAS_SKILL",
        "PURAS_DEPLOYMENT_ROOT",
        "PURAS_DRIVE_FETCHED",  # where the SDK lists the drive files it fetched
        *("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"),  # network: true (the default)
    }
    # As root, each workspace's jobs run as a uid of its own (docs/isolation.md).
    if os.geteuid() == 0:
        victim_drive = (home / "drive" / victim.id).stat()
        assert victim_drive.st_uid >= 2_000_000 and victim_drive.st_mode & 0o777 == 0o700
        assert seen["uid"] >= 2_000_000 and seen["uid"] != victim_drive.st_uid
    else:
        assert seen["uid"] == os.getuid()
    # Even with network: true, no direct route: only the egress proxy (tests/e2e/test_network.py).
    assert seen["gateway"][0] == "refused"

    offline = await snooper.run("offline", {**inputs, "files": {}, "dirs": {}})
    assert offline["status"] == "succeeded", offline
    assert offline["result"]["gateway"][0] == "refused"  # network: false — no route at all


LIMITS = {
    "skills/hang/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 2\n",
    "skills/hang/main.py": """
        import os, subprocess, time

        def run(inputs):
            marker = inputs["marker"]
            for _ in range(3):
                if os.fork() == 0:
                    os.execvp("sleep", [marker, "300"])
            middle = os.fork()
            if middle == 0:  # and one that leaves the job's session, as a daemon would
                os.setsid()
                if os.fork() == 0:
                    os.execvp("sleep", [marker, "300"])
                os._exit(0)
            os.waitpid(middle, 0)
            print("started", flush=True)
            time.sleep(300)
        """,
    "skills/hog/skill.yaml": "entrypoint: main.py:run\n",
    "skills/hog/main.py": """
        def run(inputs):
            blob = bytearray(inputs["gib"] * 1024 ** 3)
            return len(blob)
        """,
    "skills/nul/skill.yaml": "entrypoint: main.py:run\n",
    "skills/nul/main.py": """
        def run(inputs):
            print("before\\0after", flush=True)
            return {"blob": ["ok", "bin\\0ary"]}
        """,
    "skills/files/skill.yaml": "entrypoint: main.py:run\n",
    "skills/files/main.py": """
        def run(inputs):
            handles = [open("/dev/null") for _ in range(inputs["n"])]
            return len(handles)
        """,
}


def marked(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[0] == marker.encode():
                        found.append(int(name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
async def limited(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"limits-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(LIMITS)).status_code == 201
    return tenant


async def test_the_timeout_kills_the_whole_process_tree(limited: Tenant) -> None:
    marker = f"hang-{uuid.uuid4().hex}"
    job = await limited.run("hang", {"marker": marker}, timeout=30)
    assert job["status"] == "failed" and job["error_detail"] == {"timeout_seconds": 2}, job
    assert "exceeded its timeout of 2 s" in job["error"]
    assert await eventually(
        lambda: marked(marker) == [], timeout=10, what="the job's processes to be gone"
    )


async def test_the_memory_limit_fails_a_job_that_allocates_too_much(limited: Tenant) -> None:
    job = await limited.run("hog", {"gib": 3})
    assert job["status"] == "failed" and job["error"].startswith("MemoryError"), job
    assert (await limited.run("hog", {"gib": 0}))["result"] == 0


async def test_the_open_files_limit_holds(limited: Tenant) -> None:
    job = await limited.run("files", {"n": 2000})
    assert job["status"] == "failed" and "Too many open files" in job["error"], job
    assert (await limited.run("files", {"n": 100}))["result"] == 100


async def test_a_nul_character_fails_the_result_clearly_and_is_replaced_in_logs(
    limited: Tenant, js: JetStreamContext
) -> None:
    job = await limited.run("nul", {})
    assert job["status"] == "failed", job
    assert job["error"].startswith("the result holds a NUL character (U+0000) at /blob/1")
    assert "before\ufffdafter" in await log_texts(js, job["id"])
