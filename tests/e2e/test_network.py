"""The network a job gets, tried from inside real jobs: with ``network: false`` nothing at all;
with ``network: true`` only the platform's egress proxy, which refuses the platform's own
services, private, link-local, CGNAT and metadata addresses by its own decision, before any
connection, and lets public destinations (here a loopback test server the test allowlist names)
and the gateway through.

No packet leaves the machine: refused destinations are refused at the proxy's decision, direct
connections find no route inside the sandbox's namespace, and the allowed one is on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from puras_cli.engines import free_port
from puras_sandbox import bwrap_available
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROBE = """
import os, socket, urllib.error, urllib.request

def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return {"status": response.status, "body": response.read(300).decode()}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read(300).decode(),
                "egress": exc.headers.get("X-Puras-Egress")}
    except Exception as exc:
        reason = getattr(exc, "reason", exc)
        return {"error": type(reason).__name__, "detail": str(reason)[:300]}

def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return {"connected": True}
    except OSError as exc:
        return {"error": type(exc).__name__, "errno": exc.errno}

def run(inputs):
    out = {
        "proxy_env": sorted(k for k in os.environ if k.lower().endswith("_proxy")),
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
    }
    if out["interfaces"] != ["lo"]:
        return out  # not in a namespace of its own: try nothing that could leave the machine
    out["fetch"] = {name: fetch(url) for name, url in inputs["fetch"].items()}
    out["connect"] = {name: connect(*where) for name, where in inputs["connect"].items()}
    return out
"""

PROJECT = {
    "skills/online/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 120\n",
    "skills/online/main.py": PROBE,
    "skills/offline/skill.yaml": "entrypoint: main.py:run\nnetwork: false\ntimeout_seconds: 120\n",
    "skills/offline/main.py": PROBE,
}


@dataclass
class Listener:
    """A loopback server that answers every request with ``allowed`` and counts connections."""

    port: int
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0


async def _listen(port: int) -> tuple[Listener, asyncio.Server]:
    seen = Listener(port)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            seen.requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nallowed"
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return seen, await asyncio.start_server(answer, "127.0.0.1", port)


@pytest_asyncio.fixture(loop_scope="session")
async def allowed(egress_test_port: int) -> AsyncIterator[Listener]:
    seen, server = await _listen(egress_test_port)
    try:
        yield seen
    finally:
        server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def bystander() -> AsyncIterator[Listener]:
    """A loopback service nobody allowed: it must never see a connection from a job."""
    seen, server = await _listen(free_port())
    try:
        yield seen
    finally:
        server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def tenant(platform: Platform) -> Tenant:
    uid = 65534 if os.geteuid() == 0 else None
    if not bwrap_available(uid, uid):
        pytest.skip("without bubblewrap jobs share the host's network (docs/isolation.md)")
    created = await platform.tenant(f"net-{uuid.uuid4().hex[:8]}")
    assert (await created.push(PROJECT)).status_code == 201
    return created


def _ports(platform: Platform) -> dict[str, int]:
    infra = platform.infra
    nats = urlsplit(infra.nats_url()).port
    postgres = urlsplit(infra.admin_database_url).port
    assert nats and postgres
    return {
        "nats": nats,
        "postgres": postgres,
        "gateway": platform.config.ports["gateway"],
        "deployments": platform.config.ports["deployments"],
    }


def _inputs(platform: Platform, allowed: Listener, bystander: Listener) -> dict[str, Any]:
    ports = _ports(platform)
    return {
        "fetch": {
            "allowed": f"http://127.0.0.1:{allowed.port}/through-the-proxy",
            "gateway": f"{platform.url}/healthz",
            "nats": f"http://127.0.0.1:{ports['nats']}/",
            "nats_tunnel": f"https://127.0.0.1:{ports['nats']}/",
            "postgres": f"http://127.0.0.1:{ports['postgres']}/",
            "postgres_tunnel": f"https://127.0.0.1:{ports['postgres']}/",
            "deployments": f"http://127.0.0.1:{ports['deployments']}/internal/deployments",
            "bystander": f"http://127.0.0.1:{bystander.port}/",
            "bystander_by_name": f"http://localhost:{bystander.port}/",
            "private": "http://10.0.0.1/",
            "private_tunnel": "https://192.168.1.1/",
            "link_local": "http://169.254.1.1/",
            "metadata": "http://169.254.169.254/latest/meta-data/",
            "metadata_v6": "http://[fd00:ec2::254]/latest/meta-data/",
            "oracle_metadata": "http://192.0.0.192/opc/v2/instance/",
            "cgnat": "http://100.64.0.1/",
            "mapped": "http://[::ffff:169.254.169.254]/",
        },
        "connect": {
            "gateway": ["127.0.0.1", ports["gateway"]],
            "nats": ["127.0.0.1", ports["nats"]],
            "postgres": ["127.0.0.1", ports["postgres"]],
            "allowed": ["127.0.0.1", allowed.port],
            "private": ["10.0.0.1", 80],
            "public": ["192.0.2.1", 443],  # TEST-NET-1: routed nowhere, on any machine
        },
    }


REFUSED = {
    "nats": "platform's own services",
    "nats_tunnel": "platform's own services",
    "postgres": "loopback",
    "postgres_tunnel": "loopback",
    "deployments": "platform's own services",
    "bystander": "loopback",
    "bystander_by_name": "loopback",
    "private": "private",
    "private_tunnel": "private",
    "link_local": "link-local",
    "metadata": "cloud metadata",
    "metadata_v6": "cloud metadata",
    "oracle_metadata": "cloud metadata",
    "cgnat": "carrier-grade NAT",
    "mapped": "cloud metadata",
}


async def test_a_networked_job_reaches_out_only_through_the_egress_proxy(
    platform: Platform, tenant: Tenant, allowed: Listener, bystander: Listener
) -> None:
    job = await tenant.run("online", _inputs(platform, allowed, bystander), timeout=60)
    assert job["status"] == "succeeded", job
    _assert_only_the_proxy(job["result"], platform, allowed, bystander, "function-runner")


def _assert_only_the_proxy(
    seen: dict[str, Any], platform: Platform, allowed: Listener, bystander: Listener, runner: str
) -> None:
    assert seen["interfaces"] == ["lo"]
    assert seen["proxy_env"] == ["HTTPS_PROXY", "HTTP_PROXY", "http_proxy", "https_proxy"]

    fetched = seen["fetch"]
    # Allowed: the test server the allowlist names, and the public gateway.
    assert fetched["allowed"] == {"status": 200, "body": "allowed"}, fetched["allowed"]
    assert allowed.requests and allowed.requests[-1].startswith(b"GET /through-the-proxy ")
    assert fetched["gateway"]["status"] == 200, fetched["gateway"]

    # Refused by the proxy's own answer: plain http gets its 403, CONNECT (https) its refusal.
    for name, reason in REFUSED.items():
        answer = fetched[name]
        if name.endswith("_tunnel"):
            assert answer["error"] == "OSError" and "403" in answer["detail"], (name, answer)
        else:
            assert answer["status"] == 403 and answer["egress"] == "refused", (name, answer)
            assert reason in answer["body"], (name, answer)
    # Decided before any connection: the loopback service nobody allowed saw none.
    assert bystander.connections == 0

    # Direct connections: the sandbox's loopback is its own, and nothing else has a route.
    direct = seen["connect"]
    for name in ("gateway", "nats", "postgres", "allowed"):
        assert direct[name] == {"error": "ConnectionRefusedError", "errno": 111}, (name, direct)
    for name in ("private", "public"):
        assert direct[name] == {"error": "OSError", "errno": 101}, (name, direct)  # ENETUNREACH

    logs = platform.logs(runner)
    assert "egress refused" in logs and "169.254.169.254:80 is a cloud metadata" in logs


async def test_an_offline_job_has_no_network_at_all(
    platform: Platform, tenant: Tenant, allowed: Listener, bystander: Listener
) -> None:
    before = allowed.connections
    job = await tenant.run("offline", _inputs(platform, allowed, bystander), timeout=60)
    assert job["status"] == "succeeded", job
    _assert_no_network(job["result"], allowed, bystander, before)


def _assert_no_network(
    seen: dict[str, Any], allowed: Listener, bystander: Listener, before: int
) -> None:
    assert seen["interfaces"] == ["lo"]
    assert seen["proxy_env"] == []
    for name, answer in seen["fetch"].items():
        # No proxy to ask, no name service, no route: nothing answers at all.
        assert "status" not in answer, (name, answer)
    for name in ("gateway", "nats", "postgres", "allowed"):
        assert seen["connect"][name]["error"] == "ConnectionRefusedError", name
    for name in ("private", "public"):
        assert seen["connect"][name] == {"error": "OSError", "errno": 101}, name
    assert allowed.connections == before and bystander.connections == 0


# -- the agent's bash ---------------------------------------------------------------------------

AGENT_MARKER = f"netagent-{uuid.uuid4().hex[:8]}"
AGENT_PROJECT = {
    "skills/netagent/skill.yaml": "entrypoint: SKILL.md\nmodel: claude/haiku-4-5\ntimeout_seconds: 120\n",
    "skills/netagent/SKILL.md": f"You probe the network. {AGENT_MARKER}-online\n",
    "skills/offagent/skill.yaml": (
        "entrypoint: SKILL.md\nmodel: claude/haiku-4-5\nnetwork: false\ntimeout_seconds: 120\n"
    ),
    "skills/offagent/SKILL.md": f"You probe no network. {AGENT_MARKER}-offline\n",
}


async def _agent_probe(
    tenant: Tenant, model_provider: ModelStub, skill: str, match: str, inputs: dict[str, Any]
) -> dict[str, Any]:
    """What the probe saw from the agent's bash (it prints its findings as JSON)."""
    script = f"{PROBE}\nimport json\nprint(json.dumps(run(json.loads({json.dumps(json.dumps(inputs))}))))\n"
    command = f"python3 - <<'PROBE'\n{script}PROBE\n"
    model_provider.script(
        Reply(tool_calls=[Call("bash", {"command": command, "timeout": 60})]),
        Reply(text="probed"),
        match=match,
    )
    assert (await tenant.push(AGENT_PROJECT)).status_code == 201
    job = await tenant.run(skill, {"prompt": "probe"}, timeout=60)
    assert job["status"] == "succeeded", job
    listed = await tenant.http.get(f"/v1/jobs/{job['id']}/events", params={"limit": 1000})
    output = next(e for e in listed.json()["events"] if e["type"] == "tool_result")["payload"][
        "output"
    ]
    found: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return found


async def test_an_agents_bash_reaches_out_only_through_the_egress_proxy(
    platform: Platform,
    tenant: Tenant,
    model_provider: ModelStub,
    allowed: Listener,
    bystander: Listener,
) -> None:
    inputs = _inputs(platform, allowed, bystander)
    seen = await _agent_probe(tenant, model_provider, "netagent", f"{AGENT_MARKER}-online", inputs)
    _assert_only_the_proxy(seen, platform, allowed, bystander, "agent-runner")


async def test_an_offline_agents_bash_has_no_network_at_all(
    platform: Platform,
    tenant: Tenant,
    model_provider: ModelStub,
    allowed: Listener,
    bystander: Listener,
) -> None:
    before = allowed.connections
    inputs = _inputs(platform, allowed, bystander)
    seen = await _agent_probe(tenant, model_provider, "offagent", f"{AGENT_MARKER}-offline", inputs)
    _assert_no_network(seen, allowed, bystander, before)
