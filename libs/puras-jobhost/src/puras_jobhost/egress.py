"""The only way out of a networked sandbox: an HTTP(S) proxy the platform runs, per sandbox.

A sandbox with ``network: true`` gets its own network namespace, with nothing in it but a
loopback device and one listening port, ``127.0.0.1:3128`` (:data:`PROXY_PORT`). The sandbox
opens that port itself before its zygote starts and hands the listening socket to the runner
over a one-shot Unix socket (:mod:`puras_sandbox._egress_listen`); from then on the runner
accepts every connection made to it, outside the sandbox. Jobs find it through
``HTTP_PROXY``/``HTTPS_PROXY`` (:data:`PROXY_ENV`), which standard clients read: ``CONNECT
host:port`` for https, an absolute URI for plain http.

For each request the proxy resolves the host itself and decides before any connection is made
(:meth:`EgressPolicy.decide`): every address the name resolves to must be public under the SSRF
policy of :mod:`puras.netguard` (no loopback, private, link-local, CGNAT, metadata or other
reserved ranges), must not be one of this host's own addresses, nor a platform listener, unless
it is the public gateway (``PURAS_API_BASE``, for the in-job SDK). It then connects to the
checked address itself, so a second DNS answer cannot steer it. Each decision is logged and
counted (``puras_egress_decisions``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import ipaddress
import os
import re
import resource
import secrets
import shutil
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from puras.netguard import EGRESS_HEADER, IPAddress, Policy, why_blocked
from puras_common.logging import get_logger
from puras_common.observability import EGRESS_DECISIONS
from puras_common.settings import ServiceSettings
from pydantic import model_validator

log = get_logger("puras_jobhost.egress")

PROXY_PORT = 3128
"""The port the proxy answers on inside every networked sandbox (its own namespace)."""
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
PROXY_ENV: dict[str, str] = {
    "HTTP_PROXY": PROXY_URL,
    "HTTPS_PROXY": PROXY_URL,
    "http_proxy": PROXY_URL,
    "https_proxy": PROXY_URL,
}
"""What a networked job's environment gets: both spellings, as clients read one or the other."""

MAX_HEAD_BYTES = 16 * 1024
"""The most a request's line and headers may take."""
HEAD_TIMEOUT = 30.0
RESOLVE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS = 128
"""Connections one sandbox may hold open through the proxy at once; more are answered 503."""
MAX_CONNECTIONS_PER_OWNER = 256
"""Connections all sandboxes of one owner (a workspace) may hold at once on this runner."""
MAX_CONNECTIONS_TOTAL = max(64, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4)
"""Connections all sandboxes of this process may hold at once (each takes two of the runner's
file descriptors; half of them stay the runner's own); more are answered 503."""
LOGGED_REFUSALS = 20
"""Refusals a sandbox's proxy logs one by one each minute; the rest are counted."""
IDLE_SECONDS = 600.0
"""A connection through the proxy on which nothing moved either way this long is closed."""
_CHUNK = 64 * 1024

_HOST = re.compile(r"^[A-Za-z0-9._-]{1,253}$")
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)


class EgressRefused(Exception):
    """The proxy will not connect there; ``why`` is a bounded label for metrics."""

    def __init__(self, message: str, *, why: str, status: int = 403) -> None:
        super().__init__(message)
        self.why = why
        self.status = status


@dataclass(frozen=True)
class Decision:
    """An allowed destination: the checked address to connect to, and why it is allowed."""

    host: str
    port: int
    address: str
    why: str


Endpoint = tuple[str, int]
"""``(address, port)``, the address in its canonical text form."""


def parse_endpoints(text: str, *, what: str) -> frozenset[Endpoint]:
    """``"127.0.0.1:8001,[::1]:8002"`` as a set of endpoints; ValueError naming ``what``."""
    found: set[Endpoint] = set()
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        try:
            address = ipaddress.ip_address(host.strip("[]"))
            number = int(port)
        except ValueError:
            raise ValueError(f"{what} lists address:port pairs, not {item!r}") from None
        if not sep or not 0 < number < 65536:
            raise ValueError(f"{what} lists address:port pairs, not {item!r}")
        found.add((str(address), number))
    return frozenset(found)


def _endpoints_of(urls: Iterable[str]) -> frozenset[Endpoint]:
    """The addresses and ports ``urls`` point at, resolved now (names that do not resolve are
    left out: nothing could connect to them either)."""
    found: set[Endpoint] = set()
    for url in (u.strip() for text in urls for u in text.split(",")):
        try:
            parts = urlsplit(url)
            port = parts.port or {"https": 443, "http": 80, "nats": 4222}.get(parts.scheme, 5432)
        except ValueError:
            continue
        if not parts.hostname:
            continue
        try:
            infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except OSError:
            continue
        found |= {(_canonical(str(info[4][0])), port) for info in infos}
    return frozenset(found)


def _canonical(address: str) -> str:
    return str(ipaddress.ip_address(address.split("%", 1)[0]))


def is_own_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is an address of this host: it can be bound to here. (Nothing is sent.)"""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(ip), 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return False
            return True  # any other refusal: treat it as ours, refuse rather than guess
    return True


@dataclass(frozen=True)
class EgressPolicy:
    """Where jobs may connect through the proxy."""

    ssrf: Policy = field(default_factory=Policy)
    """The SSRF policy (with any networks the operator trusts for jobs)."""
    gateway: frozenset[Endpoint] = frozenset()
    """The public gateway's addresses and port: allowed, even on loopback."""
    gateway_names: frozenset[tuple[str, int]] = frozenset()
    platform: frozenset[Endpoint] = frozenset()
    """The platform's own listeners (NATS, PostgreSQL, internal services): refused."""
    test_allow: frozenset[Endpoint] = frozenset()
    """Loopback endpoints allowed by a test; production refuses to start with any."""

    @classmethod
    def build(
        cls,
        *,
        gateway_url: str,
        platform_urls: Iterable[str] = (),
        allow_networks: str = "",
        test_allow: str = "",
    ) -> EgressPolicy:
        """``gateway_url``: the gateway's URLs jobs may reach (comma-separated: the one jobs are
        given, and the public one); ``platform_urls``: the platform's listeners, refused."""
        gateway = _endpoints_of([gateway_url])
        names: set[tuple[str, int]] = set()
        for url in (u.strip() for u in gateway_url.split(",")):
            with contextlib.suppress(ValueError):
                parts = urlsplit(url)
                if parts.hostname:
                    port = parts.port or (443 if parts.scheme == "https" else 80)
                    names.add((parts.hostname.lower().rstrip("."), port))
        allowed = parse_endpoints(test_allow, what="the egress test allowlist")
        if any(not ipaddress.ip_address(a).is_loopback for a, _ in allowed):
            raise ValueError("the egress test allowlist may name loopback addresses only")
        return cls(
            ssrf=Policy.parse(allow_networks),
            gateway=gateway,
            gateway_names=frozenset(names),
            platform=_endpoints_of(platform_urls) - gateway,
            test_allow=allowed,
        )

    def check(self, address: str, port: int, *, host: str) -> str:
        """Why connecting to ``address:port`` is allowed; :class:`EgressRefused` if it is not."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        endpoint = (str(ip), port)
        if endpoint in self.gateway:
            return "gateway"
        if endpoint in self.test_allow:
            return "test"
        shown = f"{host}:{port}" + (f" ({ip})" if host != str(ip) else "")
        if endpoint in self.platform:
            raise EgressRefused(f"{shown} is one of the platform's own services", why="platform")
        if self.ssrf.allow_all or any(
            ip in net for net in self.ssrf.allowed if net.version == ip.version
        ):
            return "operator"
        if (reason := why_blocked(ip)) is not None:
            raise EgressRefused(f"{shown} is a {reason} address", why="address")
        if is_own_address(ip):
            raise EgressRefused(f"{shown} is an address of the platform's host", why="this_host")
        return "public"

    async def decide(self, host: str, port: int) -> Decision:
        """Resolve ``host`` and check every address it has; the first is the one to use."""
        host = host.strip("[]").rstrip(".").lower()
        if not 0 < port < 65536:
            raise EgressRefused(f"port {port} is not a TCP port", why="bad_request", status=400)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is None and (not _HOST.match(host) or _NUMERIC_HOST.match(host)):
            raise EgressRefused(
                f"{host!r} is not a host name or an address written as a.b.c.d",
                why="bad_request",
                status=400,
            )
        if literal is not None:
            addresses = [str(literal)]
        else:
            addresses = await _resolve(host, port)
        if (host, port) in self.gateway_names:
            return Decision(host, port, addresses[0], "gateway")
        whys = [self.check(address, port, host=host) for address in addresses]
        return Decision(host, port, addresses[0], whys[0])


_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="egress-dns")
"""Jobs' name lookups wait in threads of their own, never in the runner's default executor."""


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = await asyncio.wait_for(loop.run_in_executor(_RESOLVER, lookup), RESOLVE_TIMEOUT)
    except (OSError, TimeoutError):
        raise EgressRefused(f"{host} does not resolve", why="unresolvable", status=502) from None
    addresses = list(dict.fromkeys(_canonical(str(info[4][0])) for info in infos))
    if not addresses:
        raise EgressRefused(f"{host} does not resolve", why="unresolvable", status=502)
    return addresses


@dataclass
class _Request:
    method: str
    host: str
    port: int
    target: str
    """For plain http: the path (origin-form) to send on."""
    version: str
    headers: list[tuple[str, str]]


def _parse_head(head: bytes) -> _Request:
    try:
        text = head.decode("latin-1")
        line, *lines = text.split("\r\n")
        method, target, version = line.split(" ")
    except ValueError:
        raise EgressRefused("not an HTTP proxy request", why="bad_request", status=400) from None
    if not version.startswith("HTTP/1."):
        raise EgressRefused("only HTTP/1.x proxy requests", why="bad_request", status=400)
    headers: list[tuple[str, str]] = []
    for raw in lines:
        if not raw:
            continue
        name, sep, value = raw.partition(":")
        if not sep or not name or name != name.strip():
            raise EgressRefused("a malformed header line", why="bad_request", status=400)
        headers.append((name, value.strip()))
    if method == "CONNECT":
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise EgressRefused(
                f"CONNECT needs host:port, not {target!r}", why="bad_request", status=400
            )
        return _Request(method, host, int(port), "", version, headers)
    try:
        parts = urlsplit(target)
        port_number = parts.port or 80
    except ValueError:
        raise EgressRefused(f"not a valid URL: {target!r}", why="bad_request", status=400) from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise EgressRefused(
            "plain requests need an absolute http:// URL; use CONNECT for https",
            why="bad_request",
            status=400,
        )
    if parts.username is not None or parts.password is not None:
        raise EgressRefused("URLs with credentials are refused", why="bad_request", status=400)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Request(method, parts.hostname, port_number, path, version, headers)


_open_total = 0
"""Connections open through every proxy of this process."""
_open_by_owner: dict[str, int] = {}
"""Connections open through the proxies of each owner's sandboxes."""


class EgressProxy:
    """Serves one sandbox's egress port with :class:`EgressPolicy`."""

    def __init__(self, policy: EgressPolicy, *, name: str = "", owner: str | None = None) -> None:
        self.policy = policy
        self.name = name
        self.owner = owner
        """Whose sandbox this is (a workspace): its sandboxes on this runner share one limit."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._window = 0.0
        self._logged = 0
        self._unlogged = 0

    async def serve(self, listener: socket.socket) -> None:
        """Answer every connection made to ``listener`` (a listening TCP socket)."""
        listener.setblocking(False)
        self._server = await asyncio.start_server(self._handle, sock=listener, limit=MAX_HEAD_BYTES)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        global _open_total
        owned = _open_by_owner.get(self.owner, 0) if self.owner is not None else 0
        if (
            len(self._writers) >= MAX_CONNECTIONS
            or owned >= MAX_CONNECTIONS_PER_OWNER
            or _open_total >= MAX_CONNECTIONS_TOTAL
        ):
            EGRESS_DECISIONS.labels("refused", "busy").inc()
            writer.close()  # before reading anything: the descriptor is free again at once
            return
        self._writers.add(writer)
        _open_total += 1
        if self.owner is not None:
            _open_by_owner[self.owner] = owned + 1
        try:
            await self._proxy(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            _open_total -= 1
            if self.owner is not None:
                if (left := _open_by_owner[self.owner] - 1) > 0:
                    _open_by_owner[self.owner] = left
                else:
                    del _open_by_owner[self.owner]
            self._writers.discard(writer)
            writer.close()

    def _log_refusal(self, refused: EgressRefused) -> None:
        """At most :data:`LOGGED_REFUSALS` refusals a minute are logged one by one (the rest are
        counted, and summed up in the next line logged), so a job cannot flood the log."""
        now = time.monotonic()
        if now - self._window > 60:
            self._window, self._logged = now, 0
        if self._logged >= LOGGED_REFUSALS:
            self._unlogged += 1
            return
        self._logged += 1
        log.warning(
            "egress refused",
            sandbox=self.name,
            why=refused.why,
            reason=str(refused),
            **({"not_logged_before": self._unlogged} if self._unlogged else {}),
        )
        self._unlogged = 0

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            await _answer(writer, 431, "the request's headers are larger than 16 KiB")
            return
        if len(head) > MAX_HEAD_BYTES:
            await _answer(writer, 431, "the request's headers are larger than 16 KiB")
            return
        try:
            request = _parse_head(head)
            decision = await self.policy.decide(request.host, request.port)
        except EgressRefused as refused:
            EGRESS_DECISIONS.labels("refused", refused.why).inc()
            self._log_refusal(refused)
            await _answer(writer, refused.status, f"puras egress refused: {refused}")
            return
        EGRESS_DECISIONS.labels("allowed", decision.why).inc()
        log.debug(
            "egress allowed",
            sandbox=self.name,
            host=decision.host,
            port=decision.port,
            address=decision.address,
            why=decision.why,
        )
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(decision.address, decision.port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            await _answer(
                writer,
                502,
                f"cannot connect to {decision.host}:{decision.port}: {exc}",
                outcome="unreachable",
            )
            return
        try:
            if request.method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                up_writer.write(_forwarded_head(request))
                await up_writer.drain()
            await _pipe_both(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()


def _forwarded_head(request: _Request) -> bytes:
    """The request as the origin should see it: origin-form, no proxy or hop-by-hop headers,
    and ``Connection: close`` (one request per proxied connection)."""
    lines = [f"{request.method} {request.target} {request.version}"]
    for name, value in request.headers:
        if name.lower() not in _HOP_BY_HOP:
            lines.append(f"{name}: {value}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _answer(
    writer: asyncio.StreamWriter, status: int, message: str, *, outcome: str = "refused"
) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large"}.get(
        status, "Bad Gateway"
    )
    body = (message + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{EGRESS_HEADER}: {outcome}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Relay both ways until both sides are done, or nothing moved either way for
    :data:`IDLE_SECONDS` (a tunnel whose job is gone must not hold the runner's descriptors)."""
    last = time.monotonic()

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        nonlocal last
        try:
            while chunk := await src.read(_CHUNK):
                last = time.monotonic()
                dst.write(chunk)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            dst.close()

    both = asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    while True:
        remaining = last + IDLE_SECONDS - time.monotonic()
        if remaining <= 0:
            both.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await both
            return
        try:
            await asyncio.wait_for(asyncio.shield(both), remaining)
            return
        except TimeoutError:
            continue


class EgressPort:
    """One sandbox's egress: a one-shot Unix socket the sandbox hands its port to, then the
    proxy answering on that port."""

    def __init__(
        self, root: Path, policy: EgressPolicy, *, name: str = "", owner: str | None = None
    ) -> None:
        self.dir = root / secrets.token_hex(16)
        self.dir.mkdir(mode=0o711)
        os.chmod(self.dir, 0o711)
        self.socket_path = str(self.dir / "egress.sock")
        self._unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._unix.bind(self.socket_path)
        os.chmod(self.socket_path, 0o666)  # the sandbox's uid connects to it
        self._unix.listen(1)
        self._unix.setblocking(False)
        self.proxy = EgressProxy(policy, name=name, owner=owner)
        self._handover = asyncio.ensure_future(self._take_port())

    async def _take_port(self) -> None:
        loop = asyncio.get_running_loop()
        conn, _ = await loop.sock_accept(self._unix)
        with conn:
            conn.settimeout(10)
            _, fds, _, _ = await asyncio.to_thread(socket.recv_fds, conn, 1, 1)
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                raise OSError("the sandbox did not hand over its egress port")
            listener = socket.socket(fileno=fds[0])
            if listener.family != socket.AF_INET or listener.type != socket.SOCK_STREAM:
                listener.close()
                raise OSError("the sandbox handed over something else than a TCP socket")
            await self.proxy.serve(listener)
            conn.sendall(b"K")
        self._close_unix()

    async def ready(self, timeout: float = 10.0) -> None:
        """Wait until the proxy answers on the sandbox's port (the sandbox has started)."""
        await asyncio.wait_for(asyncio.shield(self._handover), timeout)

    def _close_unix(self) -> None:
        self._unix.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def close(self) -> None:
        self._handover.cancel()
        with contextlib.suppress(BaseException):
            await self._handover
        self._close_unix()
        await self.proxy.close()


class EgressSettings(ServiceSettings):
    """A runner's settings for its sandboxes' egress (``PURAS_<RUNNER>_EGRESS_*``)."""

    egress_allow: str = ""
    """Networks (``10.1.0.0/16,fd00:1::/64``) networked jobs may reach through the egress proxy
    despite the SSRF policy: services on the operator's own network meant for jobs."""
    egress_test_allow: str = ""
    """Tests only: loopback ``address:port`` pairs the egress proxy lets jobs reach (test
    servers). Production refuses to start with any."""
    public_url: str | None = None
    """The gateway's public URL (``PURAS_PUBLIC_URL``), which jobs may reach too: signed links
    name it."""

    @model_validator(mode="after")
    def _egress_test_allow_is_for_tests(self) -> Self:
        parse_endpoints(self.egress_test_allow, what="egress_test_allow")
        if self.egress_test_allow.strip() and self.environment == "production":
            svc = self.service.upper().replace("-", "_")
            raise ValueError(
                f"production refuses PURAS_{svc}_EGRESS_TEST_ALLOW: it opens loopback ports to jobs"
            )
        return self

    def egress_policy(
        self, *, gateway_url: str, platform_urls: Iterable[str], also_allow: str = ""
    ) -> EgressPolicy:
        """Where networked jobs may connect: public addresses, the networks of
        ``egress_allow`` and ``also_allow``, and the gateway (``gateway_url`` and the public
        URL); not the platform's own services
        (``platform_urls``, with NATS and PostgreSQL added)."""
        return EgressPolicy.build(
            gateway_url=",".join(u for u in (gateway_url, self.public_url) if u),
            platform_urls=[
                self.nats_url,
                *([self.database_url] if self.database_url else []),
                *platform_urls,
            ],
            allow_networks=",".join(n for n in (self.egress_allow, also_allow) if n.strip()),
            test_allow=self.egress_test_allow,
        )
