"""The SSRF guard: which addresses the platform may fetch from on a caller's behalf, and a
standard-library fetch that enforces it.

A URL is fetched only over http(s), only after every address its host resolves to has been
checked, by connecting to the checked address itself (so a DNS answer that changes between the
check and the connection cannot redirect it), and every redirect is checked the same way.
Refused: loopback, private, link-local (cloud metadata at 169.254.169.254 among them), shared,
multicast, reserved and unspecified addresses, IPv4 hidden inside IPv6 (mapped, compatible,
6to4, NAT64), and numeric hosts written in any but the usual dotted-decimal form (``2130706433``,
``0177.0.0.1``, ``0x7f.1``, ``127.1``).

An operator relaxes it for trusted networks with ``PURAS_SSRF_ALLOW``: a comma-separated list of
networks (``10.0.0.0/8,fd00::/8``), or ``*`` to allow every address.

Standard library only: jobs import it (through ``puras.load_bytes``) without the platform's
packages, and the platform's async fetcher (``puras_common.ssrf``) shares its policy.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

from puras.errors import PurasError

MAX_FETCH_BYTES = 50 * 1024 * 1024
"""50 MB: the most one fetch may download."""
FETCH_TIMEOUT_SECONDS = 60.0
MAX_REDIRECTS = 5
ALLOW_ENV = "PURAS_SSRF_ALLOW"
EGRESS_HEADER = "X-Puras-Egress"
"""On the platform egress proxy's own answers (a refusal, say), never on an origin's."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
_CANONICAL_V4 = re.compile(
    r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"
)


class FetchError(PurasError):
    """A URL that could not be fetched; the message says why."""


class BlockedURL(FetchError):
    """A URL the guard refuses: its scheme, its host, or an address it resolves to."""


class FetchTooLarge(FetchError):
    def __init__(self, url: str, limit: int) -> None:
        super().__init__(
            f"{url} is larger than the limit of {limit} bytes ({limit // (1024 * 1024)} MB)"
        )
        self.limit = limit


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.packed[:12] == b"\0" * 8 + b"\xff\xff\0\0":  # IPv4-translated ::ffff:0:a.b.c.d
        return ipaddress.IPv4Address(ip.packed[12:])
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    packed = ip.packed
    if packed[:12] == bytes(12) and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed[12:])
    return None


_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean …
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.169.123",  # AWS time sync
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::123",
    )
)
"""Cloud instance metadata services: they hand out the machine's credentials to anyone asking."""

_BLOCKED_NETWORKS: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "'this network'"),
        ("100.64.0.0/10", "shared, carrier-grade NAT"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.88.99.0/24", "6to4 relay"),
        ("198.18.0.0/15", "benchmarking"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("fec0::/10", "site-local"),
        ("3fff::/20", "documentation"),
    )
)
"""Ranges the standard library's flags miss (or name vaguely), checked first."""


def why_blocked(ip: IPAddress) -> str | None:
    """Why the guard refuses ``ip`` (``"loopback"``, ``"private"`` …), or ``None`` if it is public."""
    if ip in _METADATA:
        return f"cloud metadata ({_why_blocked(ip) or 'reserved'})"
    return _why_blocked(ip)


def _why_blocked(ip: IPAddress) -> str | None:
    inner = embedded_ipv4(ip)
    if inner is not None:
        reason = why_blocked(inner)
        return f"{reason} (inside an IPv6 address)" if reason else None
    for net, reason in _BLOCKED_NETWORKS:
        if ip.version == net.version and ip in net:
            return reason
    for attr, reason in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_private", "private"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return reason
    if not ip.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class Policy:
    """What may be fetched: public addresses, plus networks an operator trusts."""

    allowed: tuple[Network, ...] = ()
    allow_all: bool = False
    trusted_origins: tuple[str, ...] = field(default=())
    """``scheme://host:port`` origins fetched without the address check (the platform's own API)."""

    @classmethod
    def from_env(cls, *, trusted_origins: Iterable[str] = ()) -> Policy:
        return cls.parse(os.environ.get(ALLOW_ENV, ""), trusted_origins=trusted_origins)

    @classmethod
    def parse(cls, text: str, *, trusted_origins: Iterable[str] = ()) -> Policy:
        items = [item.strip() for item in text.split(",") if item.strip()]
        origins = tuple(o for o in (origin_of(u) for u in trusted_origins) if o)
        if "*" in items:
            return cls(allow_all=True, trusted_origins=origins)
        try:
            networks = tuple(ipaddress.ip_network(item, strict=False) for item in items)
        except ValueError as exc:
            raise ValueError(
                f"{ALLOW_ENV} must list networks like 10.0.0.0/8 (or '*'): {exc}"
            ) from None
        return cls(allowed=networks, trusted_origins=origins)

    def check_address(self, ip: IPAddress, *, host: str) -> None:
        if self.allow_all or any(ip in net for net in self.allowed if net.version == ip.version):
            return
        reason = why_blocked(ip)
        if reason is not None:
            raise BlockedURL(
                f"refusing to fetch from {host}: it resolves to {ip}, a {reason} address"
            )

    def trusts(self, url: str) -> bool:
        return origin_of(url) in self.trusted_origins


def origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}:{port}"


@dataclass(frozen=True)
class Target:
    """A URL checked by the guard: where to connect, and what to call the host."""

    url: str
    scheme: str
    host: str
    port: int
    address: str
    request_path: str


def check_url(
    url: str,
    policy: Policy,
    *,
    resolve: Callable[[str, int], list[str]] | None = None,
    proxied: bool = False,
) -> Target:
    """Check ``url`` and pick the address to connect to; :class:`BlockedURL` if refused.

    ``proxied``: the URL goes through the platform's egress proxy, which resolves the host and
    decides on its addresses itself; only the URL's form is checked here."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedURL(f"not a valid URL: {url!r} ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedURL(
            f"only http and https URLs can be fetched, not {scheme or 'a relative URL'!r}"
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BlockedURL(f"URL {url!r} has no host")
    port = port or (443 if scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if policy.trusts(url):
        return Target(url, scheme, host, port, host, path)
    if _NUMERIC_HOST.match(host) and not _CANONICAL_V4.match(host):
        raise BlockedURL(f"refusing to fetch from {host}: numeric hosts must be written as a.b.c.d")
    if proxied:
        return Target(url, scheme, host, port, host, path)
    addresses = (resolve or _resolve)(host, port)
    if not addresses:
        raise BlockedURL(f"{host} does not resolve to any address")
    for address in addresses:
        policy.check_address(ipaddress.ip_address(address.split("%", 1)[0]), host=host)
    return Target(url, scheme, host, port, addresses[0], path)


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host}: {exc.strerror}") from None
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address, with SNI and certificate checks for the URL's host name."""

    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _ViaProxy(http.client.HTTPConnection):
    """Plain HTTP through a forward proxy: the request line carries the absolute URL."""

    def __init__(self, proxy: tuple[str, int], target: Target, timeout: float) -> None:
        super().__init__(proxy[0], proxy[1], timeout=timeout)
        self._target = target

    def request_target(self) -> str:
        t = self._target
        host = f"[{t.host}]" if ":" in t.host else t.host
        return f"http://{host}:{t.port}{t.request_path}"


def egress_proxy(scheme: str, host: str) -> tuple[str, int] | None:
    """The forward proxy the environment names for ``scheme`` (``HTTPS_PROXY``, ``HTTP_PROXY``),
    unless ``NO_PROXY`` exempts ``host``: jobs with network access reach the outside only
    through the platform's egress proxy."""
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme)
    if not url or _no_proxy(host, proxies.get("no", "")):
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "") or not parts.hostname:
        return None
    return parts.hostname, parts.port or 80


def _no_proxy(host: str, no_proxy: str) -> bool:
    host = host.lower().rstrip(".")
    for entry in (e.strip().lower().lstrip(".") for e in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def _proxied(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return egress_proxy(parts.scheme.lower(), parts.hostname or "") is not None


def _connection(target: Target, timeout: float) -> http.client.HTTPConnection:
    proxy = egress_proxy(target.scheme, target.host)
    if proxy is None:
        conn_cls = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
        return conn_cls(target.address, target.host, target.port, timeout)
    if target.scheme == "https":
        tunnel = http.client.HTTPSConnection(
            proxy[0], proxy[1], timeout=timeout, context=ssl.create_default_context()
        )
        tunnel.set_tunnel(target.host, target.port)
        return tunnel
    return _ViaProxy(proxy, target, timeout)


def fetch(
    url: str,
    sink: BinaryIO,
    *,
    policy: Policy | None = None,
    max_bytes: int = MAX_FETCH_BYTES,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    headers: dict[str, str] | None = None,
) -> str | None:
    """Download ``url`` into ``sink`` under the guard; returns the response's content type.

    Raises :class:`BlockedURL`, :class:`FetchTooLarge` or :class:`FetchError`.
    """
    policy = policy or Policy.from_env()
    deadline = time.monotonic() + timeout
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        proxied = _proxied(current)
        target = check_url(current, policy, proxied=proxied)
        conn = _connection(target, max(0.1, deadline - time.monotonic()))
        path = conn.request_target() if isinstance(conn, _ViaProxy) else target.request_path
        try:
            conn.request("GET", path, headers={"User-Agent": "puras-fetch", **(headers or {})})
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"{current} answered {response.status} without a Location")
                current = urljoin(current, location)
                continue
            if (
                proxied
                and response.status == 403
                and response.getheader(EGRESS_HEADER) == "refused"
            ):
                why = response.read(1024).decode(errors="replace").strip()
                raise BlockedURL(f"refusing to fetch from {current}: {why}")
            if response.status >= 400:
                raise FetchError(f"{current} answered HTTP {response.status}")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchTooLarge(url, max_bytes)
            size = 0
            while chunk := response.read(256 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise FetchTooLarge(url, max_bytes)
                if time.monotonic() > deadline:
                    raise FetchError(f"fetching {url} took longer than {timeout:g} s")
                sink.write(chunk)
            return response.getheader("Content-Type")
        except (OSError, http.client.HTTPException) as exc:
            if proxied and str(exc).startswith("Tunnel connection failed: 403"):
                raise BlockedURL(
                    f"refusing to fetch from {current}: the platform's egress proxy refused "
                    f"{target.host}:{target.port}"
                ) from None
            if isinstance(exc, TimeoutError) or "timed out" in str(exc):
                raise FetchError(f"fetching {url} took longer than {timeout:g} s") from None
            raise FetchError(f"fetching {current} failed: {exc}") from None
        finally:
            conn.close()
    raise FetchError(f"{url} redirected more than {MAX_REDIRECTS} times")
