"""The ``puras`` API commands, run as a user runs them (a subprocess) against the platform:
login, run, jobs, deployments, secrets, keys, drive and balance, in human form and ``--json``,
with their exit codes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import sys
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from puras_testing import eventually
from puras_testing.platform import CHATTY_PROJECT, ECHO_PROJECT, Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PURAS = Path(sys.executable).parent / "puras"

ASK_PROJECT = {
    "skills/ask/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 60\n",
    "skills/ask/main.py": (
        "import puras\n\n"
        "APPROVER = {'type': 'object', 'properties': {'name': {'type': 'string'}}, "
        "'required': ['name']}\n\n"
        "def run(inputs):\n"
        "    return {'approved_by': puras.request_input('Who approves?', APPROVER)['name']}\n"
    ),
}

PROJECT = {**ECHO_PROJECT, **CHATTY_PROJECT, **ASK_PROJECT}


@dataclass
class Done:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class User:
    """A shell user: their own HOME and config file, no Puras variables in the environment."""

    home: Path
    url: str

    @property
    def config(self) -> Path:
        return self.home / ".config" / "puras" / "config.json"

    async def __call__(self, *args: str, stdin: str | None = None, timeout: float = 60) -> Done:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PURAS_")}
        env |= {"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config")}
        proc = await asyncio.create_subprocess_exec(
            str(PURAS),
            *args,
            cwd=self.home,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else b""), timeout
        )
        assert proc.returncode is not None
        return Done(proc.returncode, out.decode(), err.decode())


@pytest.fixture(scope="module")
async def tenant(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"cli-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(PROJECT)).status_code == 201
    return tenant


@pytest.fixture(scope="module")
async def user(
    platform: Platform, tenant: Tenant, tmp_path_factory: pytest.TempPathFactory
) -> User:
    user = User(tmp_path_factory.mktemp("cli-home"), platform.url)
    done = await user("login", "--api-base", platform.url, stdin=tenant.api_key + "\n")
    assert done.code == 0, done.err
    return user


async def test_login_stores_the_key_owner_only_and_refuses_a_bad_one(
    platform: Platform, tenant: Tenant, user: User
) -> None:
    mode = stat.S_IMODE(user.config.stat().st_mode)
    assert mode == 0o600
    saved = json.loads(user.config.read_text())
    assert saved == {"api_base": platform.url, "api_key": tenant.api_key, "workspace": tenant.slug}

    fresh = User(user.home / "other", platform.url)
    fresh.home.mkdir()
    nothing = await fresh("jobs", "list")
    assert nothing.code == 2 and "error: not_configured: no API key" in nothing.err
    bad = await fresh(
        "login", "--api-base", platform.url, "--api-key", "puras_live_AAAAAAAA." + "B" * 32
    )
    assert bad.code == 3 and bad.err.startswith("error: invalid_key: ")
    assert not fresh.config.exists()
    unreachable = await fresh(
        "balance", "--api-base", "http://127.0.0.1:9", "--api-key", tenant.api_key
    )
    assert unreachable.code == 5 and "error: unreachable: " in unreachable.err


async def test_run_streams_the_events_and_prints_the_result(user: User) -> None:
    done = await user("run", "chatty", "-i", "lines=3")
    assert done.code == 0, done.err
    assert json.loads(done.out) == {"lines": 3}
    kinds = [line.split()[1] for line in done.err.splitlines()[1:]]
    assert kinds[0] == "queued" and kinds[-1] == "succeeded"
    logs = [
        line.split(None, 2)[2] for line in done.err.splitlines()[1:] if line.split()[1] == "log"
    ]
    assert logs == ["line 0", "line 1", "line 2"]

    scripted = await user("run", "echo", "--inputs", '{"text": "a"}', "-i", "text=b", "--json")
    assert scripted.code == 0 and scripted.err == ""
    job = scripted.json()
    assert (job["status"], job["result"]) == ("succeeded", {"echoed": "b"})

    failed = await user("run", "boom")
    assert failed.code == 1
    assert "failed: KeyError: 'missing'" in failed.err

    refused = await user("run", "echo", "-i", "text=1")
    assert refused.code == 3
    assert refused.err.strip().endswith(
        "error: validation_error: inputs do not match the input_schema of 'echo': "
        "1 is not of type 'string' at /inputs/text"
    )
    as_json = await user("run", "nope", "--json")
    assert as_json.code == 3 and json.loads(as_json.err)["error"]["code"] == "not_found"


async def test_jobs_list_get_tail_and_cancel(user: User, tenant: Tenant) -> None:
    ran = (await user("run", "echo", "-i", "text=listed", "--json")).json()
    listed = await user("jobs", "list", "--json", "--limit", "5")
    assert ran["id"] in [j["id"] for j in listed.json()["data"]]
    human = await user("jobs", "list", "--status", "succeeded")
    assert human.out.splitlines()[0].split() == ["ID", "STATUS", "SKILL", "COST_MICROS", "CREATED"]
    assert ran["id"] in human.out

    got = await user("jobs", "get", ran["id"])
    assert f"id           {ran['id']}" in got.out and '"echoed": "listed"' in got.out

    tail = await user("jobs", "tail", ran["id"], "--json")
    events = [json.loads(line) for line in tail.out.splitlines()]
    assert tail.code == 0 and events[0]["type"] == "queued" and events[-1]["type"] == "succeeded"

    slow = (
        await tenant.http.post(
            "/v1/jobs", json={"skill": "chatty", "inputs": {"lines": 200, "pause": 0.1}}
        )
    ).json()
    cancelled = await user("jobs", "cancel", slow["id"])
    assert cancelled.code == 0 and cancelled.out.startswith(f"job {slow['id']} ")
    tail = await user("jobs", "tail", slow["id"])
    assert tail.code == 1 and "cancelled" in tail.err
    again = await user("jobs", "cancel", slow["id"])
    assert again.code == 3 and again.err.startswith("error: conflict: ")


async def test_a_run_shows_the_jobs_question_and_jobs_answer_answers_it(user: User) -> None:
    running = asyncio.create_task(user("run", "ask"))

    async def waiting() -> str | None:
        listed = (await user("jobs", "list", "--status", "waiting", "--json")).json()["data"]
        return listed[0]["id"] if listed else None

    job_id = await eventually(waiting, what="the job to ask its question")
    not_json = await user("jobs", "answer", job_id, "{name: Ada}")
    assert not_json.code == 2 and "error: usage: the answer is not JSON" in not_json.err
    wrong = await user("jobs", "answer", job_id, '{"nom": "Ada"}')
    assert wrong.code == 3
    assert wrong.err.startswith(
        "error: invalid_request: the answer does not match the question's answer_schema: "
    )
    assert wrong.err.rstrip().endswith("at /answer")
    answered = await user("jobs", "answer", job_id, "-", stdin='{"name": "Ada"}')
    assert (answered.code, answered.out) == (0, f"job {job_id} queued: answered, runs on\n")

    ran = await running
    assert ran.code == 0, ran.err
    assert json.loads(ran.out) == {"approved_by": "Ada"}
    asked = [line for line in ran.err.splitlines() if " input_requested " in line]
    assert len(asked) == 1 and asked[0].endswith(f"puras jobs answer {job_id} JSON)")
    assert "Who approves? (an answer matching " in asked[0]
    again = await user("jobs", "answer", job_id, '{"name": "Bob"}')
    assert again.code == 3 and again.err.startswith("error: conflict: ")


async def test_deployments_list_rollback_activate_and_delete(user: User, tenant: Tenant) -> None:
    second = await tenant.push(
        {**PROJECT, "skills/echo/main.py": "def run(i):\n    return {'echoed': 'v2'}\n"}
    )
    assert second.status_code == 201
    listed = (await user("deployments", "list", "--json")).json()["data"]
    newest, previous = listed[0], listed[1]
    assert newest["active"] and newest["version"] == previous["version"] + 1

    back = await user("deployments", "rollback")
    assert back.code == 0 and f"v{previous['version']} (active)" in back.out
    assert (await user("run", "echo", "-i", "text=x", "--json")).json()["result"] == {"echoed": "x"}
    table = await user("deployments", "list")
    assert any(
        line.split()[:3] == [previous["id"], str(previous["version"]), "*"]
        for line in table.out.splitlines()
    )

    forward = await user("deployments", "activate", newest["id"])
    assert forward.code == 0
    ramped = await user("deployments", "activate", previous["id"], "--traffic", "40")
    assert ramped.code == 0 and "40 % of traffic" in ramped.out
    ended = await user("deployments", "rollback")  # a ramp in progress gives its share back
    assert ended.code == 0 and f"v{newest['version']} (active)" in ended.out
    await user("deployments", "activate", previous["id"], "--traffic", "40")
    promoted = await user("deployments", "promote", previous["id"])
    assert promoted.code == 0 and f"v{previous['version']} (active)" in promoted.out
    forward = await user("deployments", "activate", newest["id"])
    assert forward.code == 0
    assert (await user("run", "echo", "-i", "text=x", "--json")).json()["result"] == {
        "echoed": "v2"
    }
    refused = await user("deployments", "delete", newest["id"])
    assert refused.code == 3 and refused.err.startswith("error: conflict: ")
    deleted = await user("deployments", "delete", previous["id"])
    assert deleted.code == 0
    after = (await user("deployments", "list", "--json")).json()["data"]
    assert previous["id"] not in [d["id"] for d in after]


async def test_secrets_keys_drive_and_balance(user: User, tenant: Tenant, tmp_path: Path) -> None:
    assert (await user("secrets", "set", "API_TOKEN", stdin="s3cret\n")).code == 0
    names = (await user("secrets", "list", "--json")).json()["data"]
    assert [s["name"] for s in names] == ["API_TOKEN"]
    assert "s3cret" not in (await user("secrets", "list")).out
    assert (await user("secrets", "rm", "API_TOKEN")).code == 0
    bad = await user("secrets", "set", "lower", "v")
    assert bad.code == 3

    minted = await user(
        "keys",
        "create",
        "--publishable",
        "--name",
        "app",
        "--allow",
        "echo",
        "--daily-cap-usd",
        "0.5",
        "--json",
    )
    key = minted.json()
    assert key["api_key"].startswith("puras_pub_") and key["daily_cap_micros"] == 500_000
    listing = await user("keys", "list")
    assert any(
        key["prefix"] in line and "$0.5" in line and "active" in line
        for line in listing.out.splitlines()
    )
    revoked = await user("keys", "revoke", key["prefix"])
    assert revoked.code == 0 and f"key {key['prefix']} revoked" in revoked.out
    after = (await user("keys", "list", "--json")).json()["data"]
    assert next(k for k in after if k["id"] == key["id"])["revoked_at"] is not None

    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    stored = await user("drive", "upload", str(photo), "--path", "cli/photo.png", "--json")
    assert stored.code == 0, stored.err
    assert stored.json()["drive_path"] == "cli/photo.png"
    ls = await user("drive", "ls", "cli")
    assert ls.out.split() == ["108", ls.out.split()[1], "photo.png"]
    link = (await user("drive", "sign", "cli/photo.png", "--ttl", "60")).out.strip()
    async with httpx.AsyncClient() as http:
        assert (await http.get(link)).content == photo.read_bytes()
    zipped = await user("drive", "zip", "cli", "-o", str(tmp_path / "cli.zip"))
    assert zipped.code == 0, zipped.err
    with zipfile.ZipFile(io.BytesIO((tmp_path / "cli.zip").read_bytes())) as archive:
        assert archive.read("cli/photo.png") == photo.read_bytes()
    exists = await user("drive", "zip", "cli", "-o", str(tmp_path / "cli.zip"))
    assert exists.code == 2 and "--force" in exists.err
    assert (await user("drive", "rm", "cli/photo.png")).out.strip() == "deleted 1 file(s)"

    balance = await user("balance", "--json")
    assert balance.json()["workspace"] == tenant.slug and balance.json()["balance_micros"] > 0
    assert (await user("balance")).out.startswith(f"{tenant.slug}: $")
