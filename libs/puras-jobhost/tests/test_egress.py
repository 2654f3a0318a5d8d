"""The egress proxy: which destinations a networked job may reach, decided before any
connection; the proxy's answers to CONNECT and plain http; and a real sandbox whose only way
out is that proxy. Only loopback is ever connected to."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from puras_cli.engines import free_port
from puras_common.observability import EGRESS_DECISIONS
from puras_jobhost.egress import (
    PROXY_ENV,
    EgressPolicy,
    EgressProxy,
    EgressRefused,
    is_own_address,
    parse_endpoints,
)
from puras_jobhost.prepare import Deployments, Prepared
from puras_sandbox import Exec, bwrap_available

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOWHERE = EgressPolicy()


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("192.0.0.192", "cloud metadata"),
        ("192.0.0.0", "IETF protocol assignment"),
        ("192.0.0.255", "IETF protocol assignment"),
        ("100.64.0.0", "carrier-grade NAT"),
        ("100.127.255.255", "carrier-grade NAT"),
        ("0.0.0.0", "'this network'"),
        ("0.1.2.3", "'this network'"),
        ("198.18.0.0", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("fec0::1", "site-local"),
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "loopback (inside an IPv6 address)"),
        ("::ffff:169.254.169.254", "cloud metadata (link-local) (inside an IPv6 address)"),
        ("::ffff:0:a9fe:a9fe", "cloud metadata (link-local) (inside an IPv6 address)"),
        ("::ffff:192.0.0.192", "cloud metadata"),
        ("64:ff9b::c000:c0", "cloud metadata"),
        ("2002:a9fe:a9fe::1", "cloud metadata"),
        ("::127.0.0.1", "loopback"),
    ],
)
async def test_non_public_addresses_are_refused_with_their_kind(address: str, why: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        await NOWHERE.decide(address, 443)
    assert why in str(refused.value) and refused.value.why == "address"
    assert refused.value.status == 403


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "192.0.1.0",  # just past 192.0.0.0/24
        "100.63.255.255",  # just below 100.64.0.0/10
        "100.128.0.0",  # just past it
        "198.20.0.0",  # just past 198.18.0.0/15
        "1.0.0.1",
    ],
)
async def test_public_addresses_are_allowed_without_connecting(address: str) -> None:
    decision = await NOWHERE.decide(address, 443)
    assert (decision.address, decision.why) == (str(ipaddress.ip_address(address)), "public")


@pytest.mark.parametrize("host", ["0x7f.1", "2130706433", "0177.0.0.1", "127.1", "a b", "x" * 300])
async def test_hosts_in_odd_forms_are_refused_as_bad_requests(host: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        await NOWHERE.decide(host, 80)
    assert refused.value.status == 400


async def test_names_are_resolved_by_the_proxy_and_every_address_checked() -> None:
    with pytest.raises(EgressRefused, match=r"localhost:80 \(127\.0\.0\.1\) is a loopback"):
        await NOWHERE.decide("localhost", 80)
    with pytest.raises(EgressRefused) as unresolvable:
        await NOWHERE.decide("no-such-host.invalid", 80)
    assert unresolvable.value.why == "unresolvable" and unresolvable.value.status == 502


async def test_the_gateway_is_the_one_platform_listener_allowed() -> None:
    policy = EgressPolicy.build(
        gateway_url="http://127.0.0.1:18080",
        platform_urls=[
            "nats://127.0.0.1:14222,nats://127.0.0.1:14223",
            "postgresql://puras:pw@127.0.0.1:15432/puras",
            "http://127.0.0.1:18081",
        ],
        allow_networks="127.0.0.0/8",  # even where an operator opens loopback to jobs
    )
    assert (await policy.decide("127.0.0.1", 18080)).why == "gateway"
    assert (await policy.decide("localhost", 18080)).why == "gateway"
    for port in (14222, 14223, 15432, 18081):
        with pytest.raises(EgressRefused, match="platform's own services") as refused:
            await policy.decide("127.0.0.1", port)
        assert refused.value.why == "platform"
    assert (await policy.decide("127.0.0.1", 18082)).why == "operator"
    # The public URL too, by name and by address (signed links name it).
    public = EgressPolicy.build(gateway_url="http://127.0.0.1:18080, http://localhost:18090")
    assert (await public.decide("localhost", 18090)).why == "gateway"
    assert (await public.decide("127.0.0.1", 18090)).why == "gateway"
    with pytest.raises(EgressRefused, match="loopback"):
        await public.decide("127.0.0.1", 18091)
    # Without the operator's word, loopback is refused whatever the port.
    closed = EgressPolicy.build(gateway_url="http://127.0.0.1:18080")
    with pytest.raises(EgressRefused, match="loopback"):
        await closed.decide("127.0.0.1", 18082)


async def test_the_hosts_own_addresses_are_refused() -> None:
    assert is_own_address(ipaddress.ip_address("127.0.0.1"))
    assert not is_own_address(ipaddress.ip_address("192.0.2.1"))  # TEST-NET-1: nobody's
    own = _a_public_address_of_this_host()
    if own is None:
        pytest.skip("this host has no public address to try")
    with pytest.raises(EgressRefused, match="the platform's host") as refused:
        await NOWHERE.decide(own, 8443)
    assert refused.value.why == "this_host"


def _a_public_address_of_this_host() -> str | None:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if ip.is_global:
            return str(ip)
    return None


async def test_the_test_allowlist_takes_loopback_pairs_only() -> None:
    assert parse_endpoints("127.0.0.1:8001, [::1]:8002", what="x") == {
        ("127.0.0.1", 8001),
        ("::1", 8002),
    }
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "host:80", "127.0.0.1:x"):
        with pytest.raises(ValueError, match="address:port"):
            parse_endpoints(bad, what="the list")
    with pytest.raises(ValueError, match="loopback addresses only"):
        EgressPolicy.build(gateway_url="http://127.0.0.1:1", test_allow="10.0.0.1:80")


# -- the proxy ---------------------------------------------------------------------------------


@dataclass
class Origin:
    """A loopback server that records what reached it."""

    port: int
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0


@pytest_asyncio.fixture(loop_scope="session")
async def origin() -> AsyncIterator[Origin]:
    seen = Origin(free_port())

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.heads.append(head)
            if head.startswith(b"ECHO"):
                writer.write(b"echo:" + await reader.read(100))
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\norigin")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", seen.port)
    try:
        yield seen
    finally:
        server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(origin: Origin) -> AsyncIterator[int]:
    policy = EgressPolicy.build(
        gateway_url="http://127.0.0.1:1", test_allow=f"127.0.0.1:{origin.port}"
    )
    running = EgressProxy(policy, name="test")
    port = free_port()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    await running.serve(listener)
    try:
        yield port
    finally:
        await running.close()


async def _ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _refusals(why: str) -> float:
    return EGRESS_DECISIONS.labels("refused", why)._value.get()


async def test_plain_http_goes_to_an_allowed_origin_in_origin_form(
    proxy: int, origin: Origin
) -> None:
    async with httpx.AsyncClient(proxy=f"http://127.0.0.1:{proxy}") as client:
        response = await client.get(
            f"http://127.0.0.1:{origin.port}/path?q=1", headers={"Proxy-Authorization": "x"}
        )
    assert response.status_code == 200 and response.text == "origin"
    head = origin.heads[-1].decode()
    assert head.startswith("GET /path?q=1 HTTP/1.1\r\n")
    assert "proxy-authorization" not in head.lower() and "Connection: close" in head


async def test_connect_tunnels_to_an_allowed_origin(proxy: int, origin: Origin) -> None:
    answer = await _ask(
        proxy,
        f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n\r\nECHO\r\n\r\nthrough".encode(),
    )
    assert answer == b"HTTP/1.1 200 Connection established\r\n\r\necho:through"


@pytest.mark.parametrize(
    ("destination", "reason"),
    [
        ("10.1.2.3:443", "private"),
        ("169.254.169.254:80", "cloud metadata"),
        ("192.0.0.192:80", "cloud metadata"),
        ("[fd00:ec2::254]:80", "cloud metadata"),
        ("100.64.1.1:443", "carrier-grade NAT"),
        ("[::ffff:10.0.0.1]:443", "private"),
    ],
)
async def test_refusals_are_the_proxys_answer(proxy: int, destination: str, reason: str) -> None:
    before = _refusals("address")
    answer = await _ask(proxy, f"CONNECT {destination} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"X-Puras-Egress: refused" in answer and reason.encode() in answer
    assert _refusals("address") == before + 1


async def test_a_refused_loopback_port_is_never_connected_to(proxy: int, origin: Origin) -> None:
    # A listener on loopback that the allowlist does not name: it must see no connection.
    hits: list[int] = []

    async def count(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(1)
        writer.close()

    port = free_port()
    bystander = await asyncio.start_server(count, "127.0.0.1", port)
    try:
        for request in (
            f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n",
            f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n",
            f"GET http://localhost:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        ):
            answer = await _ask(proxy, request.encode())
            assert answer.startswith(b"HTTP/1.1 403") and b"loopback" in answer
    finally:
        bystander.close()
    assert hits == []


@pytest.mark.parametrize(
    ("request_text", "status"),
    [
        ("hello\r\n\r\n", b"400"),
        ("GET /relative HTTP/1.1\r\n\r\n", b"400"),
        ("GET https://example.com/ HTTP/1.1\r\n\r\n", b"400"),
        ("GET http://user:pw@example.com/ HTTP/1.1\r\n\r\n", b"400"),
        ("CONNECT example.com HTTP/1.1\r\n\r\n", b"400"),
        ("CONNECT 0x7f.1:80 HTTP/1.1\r\n\r\n", b"400"),
        ("CONNECT 127.0.0.1:0 HTTP/1.1\r\n\r\n", b"400"),
        ("GET http://x/ HTTP/2\r\n\r\n", b"400"),
        ("GET http://x/ HTTP/1.1\r\nX: " + "a" * (16 * 1024) + "\r\n\r\n", b"431"),
    ],
)
async def test_malformed_requests_are_answered_not_forwarded(
    proxy: int, request_text: str, status: bytes
) -> None:
    answer = await _ask(proxy, request_text.encode())
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]


async def test_a_header_just_under_the_limit_is_read(proxy: int, origin: Origin) -> None:
    request = f"GET http://127.0.0.1:{origin.port}/edge HTTP/1.1\r\nHost: x\r\n".encode()
    filler = 16 * 1024 - len(request) - len(b"X: \r\n\r\n")
    answer = await _ask(proxy, request + b"X: " + b"a" * filler + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK")


# -- a real sandbox ----------------------------------------------------------------------------


PROBE = """
import json, os, socket, sys, urllib.request
out = {"env": {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}}
def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return ["ok", r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]
    except Exception as e:
        return ["error", type(e).__name__]
def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    except OSError as e:
        return type(e).__name__ + ":" + str(e.errno)
args = json.loads(sys.argv[1])
out["allowed"] = fetch(f"http://127.0.0.1:{args['port']}/inside")
out["metadata"] = fetch("http://169.254.169.254/latest/meta-data/")
out["direct_loopback"] = connect("127.0.0.1", args["port"])
out["direct_private"] = connect("10.0.0.1", 80)
out["interfaces"] = sorted(name for _, name in socket.if_nameindex())
print(json.dumps(out))
"""


@pytest.fixture
def cache() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="puras-egress-test-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_a_networked_sandbox_reaches_out_only_through_the_proxy(
    cache: Path, origin: Origin
) -> None:
    uid = 65534 if os.geteuid() == 0 else None
    if not bwrap_available(uid, uid):
        pytest.skip("bubblewrap is not available here")
    from puras_sandbox import python_for

    python = python_for(uid, uid)
    policy = EgressPolicy.build(
        gateway_url="http://127.0.0.1:1", test_allow=f"127.0.0.1:{origin.port}"
    )
    async with httpx.AsyncClient() as http:
        d = Deployments(
            cache_dir=cache,
            deployments_url="http://unused.invalid",
            token="t",
            http=http,
            uid=uid,
            gid=uid,
            max_warm=8,
            python=python,
            sandboxed=True,
            egress=policy,
        )
        try:
            root = cache / "deployments" / "d" / "project"
            root.mkdir(parents=True)
            for path in (root.parent.parent, root.parent, root):
                path.chmod(0o755)
            p = Prepared(uuid.uuid4(), root, {}, python)
            workspace = uuid.uuid4()
            server = await d.fork_server(p, workspace_id=workspace, network=True)
            # Its egress counts against its workspace's shared connection limit.
            assert [e.proxy.owner for e in d._egress_ports.values()] == [str(workspace)]
            env = {"PATH": "/usr/bin:/bin", **d.job_env(network=True)}
            assert d.job_env(network=False) == {}
            child = await server.spawn(
                Exec([python, "-I", "-c", PROBE, f'{{"port": {origin.port}}}']),
                workdir="/tmp",
                env=env,
            )
            out, err = await asyncio.gather(child.stdout.read(), child.stderr.read())
            assert (await child.wait()).exit_code == 0, err
        finally:
            await d.close()
    seen = json.loads(out)
    assert seen["env"] == PROXY_ENV
    assert seen["allowed"] == ["ok", "origin"]
    assert b"GET /inside" in origin.heads[-1]
    assert seen["metadata"][0] == 403 and "cloud metadata" in seen["metadata"][1]
    # The sandbox's loopback is its own: the test server on the host's is not there, and
    # nothing else has a route.
    assert seen["direct_loopback"] == "ConnectionRefusedError:111"
    assert seen["direct_private"] == "OSError:101"  # ENETUNREACH: no route at all
    assert seen["interfaces"] == ["lo"]
    assert not list((cache / "egress").iterdir())  # the hand-over socket is gone


async def test_the_in_job_fetcher_goes_through_the_proxy(
    proxy: int, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from puras import netguard

    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    # The in-job guard leaves the addresses to the proxy (a sandbox cannot resolve names).
    sink = io.BytesIO()
    url = f"http://127.0.0.1:{origin.port}/via-proxy"
    await asyncio.to_thread(netguard.fetch, url, sink, policy=netguard.Policy())
    assert sink.getvalue() == b"origin" and b"GET /via-proxy" in origin.heads[-1]
    for refused in ("http://10.0.0.1/", "https://169.254.169.254/", "https://[fd00:ec2::254]/"):
        with pytest.raises(netguard.BlockedURL, match="refusing to fetch"):
            await asyncio.to_thread(netguard.fetch, refused, io.BytesIO(), policy=netguard.Policy())
    # Forms the guard refuses are still refused before anything is sent.
    with pytest.raises(netguard.BlockedURL, match=r"a\.b\.c\.d"):
        await asyncio.to_thread(netguard.fetch, "http://0x7f.1/", io.BytesIO())


async def test_production_refuses_the_test_allowlist() -> None:
    from puras_jobhost.egress import EgressSettings
    from pydantic import ValidationError

    development = EgressSettings(
        egress_test_allow="127.0.0.1:8001", public_url="http://127.0.0.1:8002"
    )
    policy = development.egress_policy(gateway_url="http://127.0.0.1:1", platform_urls=())
    assert policy.test_allow == {("127.0.0.1", 8001)}
    assert policy.gateway == {("127.0.0.1", 1), ("127.0.0.1", 8002)}
    with pytest.raises(ValidationError, match=r"production refuses .*EGRESS_TEST_ALLOW"):
        EgressSettings(
            environment="production", internal_token="x" * 40, egress_test_allow="127.0.0.1:8001"
        )
    with pytest.raises(ValidationError, match="address:port"):
        EgressSettings(egress_test_allow="localhost")
    assert EgressSettings(environment="production", internal_token="x" * 40).egress_test_allow == ""


async def test_connections_past_a_sandboxs_limit_are_closed_at_once(
    proxy: int, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from puras_jobhost import egress

    monkeypatch.setattr(egress, "MAX_CONNECTIONS", 2)
    held = [await asyncio.open_connection("127.0.0.1", proxy) for _ in range(2)]
    try:
        for _, writer in held:  # both are taken: each is waiting for its request head
            writer.write(b"GET http://10.0.0.1/ HTTP/1.1\r\n")
            await writer.drain()
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the third: closed, unanswered
        writer.close()
        # The second one was within the limit: it is answered.
        reader, writer = held[1]
        writer.write(b"Host: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 403")
        reader, writer = held.pop()
        writer.close()
        await asyncio.sleep(0.2)
        # A place is free again.
        answer = await _ask(
            proxy, f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n\r\nECHO\r\n\r\n1".encode()
        )
        assert answer.endswith(b"echo:1")
    finally:
        for _, writer in held:
            writer.close()


async def test_a_tunnel_idle_both_ways_is_closed(
    proxy: int, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from puras_jobhost import egress

    monkeypatch.setattr(egress, "IDLE_SECONDS", 0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    try:
        # The origin waits for a head that never comes: nothing moves after the 200.
        writer.write(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n\r\n".encode())
        await writer.drain()
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 200 Connection established\r\n\r\n"
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the proxy
    finally:
        writer.close()


async def test_refusals_past_the_log_budget_are_counted_not_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from puras_jobhost import egress

    lines: list[dict[str, object]] = []
    monkeypatch.setattr(egress, "LOGGED_REFUSALS", 2)
    monkeypatch.setattr(egress.log, "warning", lambda event, **kw: lines.append(kw))
    running = EgressProxy(NOWHERE, name="flood")
    for _ in range(5):
        running._log_refusal(EgressRefused("10.0.0.1:80 is a private address", why="address"))
    assert len(lines) == 2 and "not_logged_before" not in lines[-1]
    running._window -= 61  # a minute later
    running._log_refusal(EgressRefused("10.0.0.1:80 is a private address", why="address"))
    assert len(lines) == 3 and lines[-1]["not_logged_before"] == 3


async def test_one_owners_sandboxes_share_one_limit(
    origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from puras_jobhost import egress

    monkeypatch.setattr(egress, "MAX_CONNECTIONS_PER_OWNER", 2)
    policy = EgressPolicy.build(
        gateway_url="http://127.0.0.1:1", test_allow=f"127.0.0.1:{origin.port}"
    )
    ports, proxies = [], []
    for owner in ("a", "a", "b"):  # two sandboxes of one workspace, one of another
        running = EgressProxy(policy, name=owner, owner=owner)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        await running.serve(listener)
        ports.append(listener.getsockname()[1])
        proxies.append(running)
    held = []
    try:
        for port in (ports[0], ports[1]):  # a's two sandboxes, one connection each: a's limit
            held.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[1])
        assert await asyncio.wait_for(reader.read(), 10) == b""  # a's third: closed unread
        writer.close()
        request = f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n\r\nECHO\r\n\r\nb".encode()
        assert (await _ask(ports[2], request)).endswith(b"echo:b")  # b is not held up
    finally:
        for _, writer in held:
            writer.close()
        for running in proxies:
            await running.close()
    await asyncio.sleep(0.2)
    assert egress._open_by_owner == {}
