"""HTTP GETs the platform makes on a job's behalf (web_fetch, download_url, attachment URLs),
behind an SSRF guard.

Each hop's host is resolved here, every address it resolves to must be a public one (not
loopback, private, link-local, CGNAT, multicast, reserved or a metadata address, including
IPv4 written inside IPv6), and the connection is made to the address that was checked (the
original name still goes in ``Host`` and TLS SNI), so a second DNS answer cannot swap in an
internal address. Redirects are followed by hand and each target is checked again. An operator
can relax the guard for trusted networks (``fetch_allow_private``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

MAX_REDIRECTS = 5


class FetchError(Exception):
    """The URL could not be fetched; the message says why, for the model or the job's error."""


class BlockedAddress(FetchError):
    """The URL leads to an address the SSRF guard refuses."""


class TooLarge(FetchError):
    def __init__(self, url: str, limit: int) -> None:
        super().__init__(f"{url} is larger than the limit of {limit} bytes ({limit // (1024 * 1024)} MB)")
        self.limit = limit


@dataclass(frozen=True)
class Fetched:
    url: str
    """The final URL, after redirects."""
    status: int
    content_type: str
    """The media type, without parameters, lower-cased."""
    charset: str | None
    body: bytes


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return _refused(embedded)
    return not ip.is_global or ip.is_multicast


class Fetcher:
    """GETs through the guard; one per process, shared by every job."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        trusted_hosts: frozenset[str] = frozenset(),
        timeout_seconds: float = 60.0,
        user_agent: str = "Puras-Agent/1.0",
    ) -> None:
        self.allow_private = allow_private
        self.trusted_hosts = trusted_hosts
        """Host names the operator lets through even when they resolve to internal addresses."""
        self.client = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False, headers={"User-Agent": user_agent})

    async def check(self, url: str) -> tuple[str, str]:
        """The URL's host and the checked address to connect to; raises FetchError/BlockedAddress."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"only http:// and https:// URLs can be fetched, not {url[:100]!r}")
        host = parts.hostname
        if not host:
            raise FetchError(f"{url[:100]!r} has no host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError(f"cannot resolve {host}: {exc.strerror}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addresses:
            raise FetchError(f"{host} resolves to no address")
        if not self.allow_private and host not in self.trusted_hosts:
            blocked = [str(a) for a in addresses if _refused(a)]
            if blocked:
                raise BlockedAddress(f"{host} resolves to {blocked[0]}, a private or internal address; the platform does not fetch those")
        return host, str(addresses[0])

    async def get(self, url: str, *, max_bytes: int) -> Fetched:
        """GET ``url`` (following up to 5 redirects, each checked), refusing bodies over ``max_bytes``."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            host, address = await self.check(current)
            parts = urlsplit(current)
            netloc = f"[{address}]" if ":" in address else address
            if parts.port:
                netloc += f":{parts.port}"
            pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            host_header = parts.netloc.rsplit("@", 1)[-1]
            request = self.client.build_request("GET", pinned, headers={"Host": host_header}, extensions={"sni_hostname": host})
            try:
                response = await self.client.send(request, stream=True)
            except httpx.TimeoutException:
                raise FetchError(f"{current} did not answer within {self.client.timeout.read} s") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"{current} could not be fetched: {type(exc).__name__}: {exc}") from None
            try:
                if response.is_redirect and "location" in response.headers:
                    current = urljoin(current, response.headers["location"])
                    continue
                body = await _read_capped(response, current, max_bytes)
            finally:
                await response.aclose()
            if response.status_code >= 400:
                raise FetchError(f"{current} answered HTTP {response.status_code}")
            media, _, params = response.headers.get("content-type", "application/octet-stream").partition(";")
            charset = None
            for param in params.split(";"):
                key, _, value = param.strip().partition("=")
                if key.lower() == "charset" and value:
                    charset = value.strip('"').lower()
            return Fetched(current, response.status_code, media.strip().lower(), charset, body)
        raise FetchError(f"{url} redirected more than {MAX_REDIRECTS} times")

    async def aclose(self) -> None:
        await self.client.aclose()


async def _read_capped(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(url, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(url, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
