"""Fetching URLs on a caller's behalf, under the SSRF guard, for platform code (the agent's
``download_url`` and ``web_fetch``, attachment URLs, inputs the platform resolves).

The policy is :mod:`puras.netguard`'s, shared with the in-job SDK: http(s) only; every address
the host resolves to must be public (or in ``PURAS_SSRF_ALLOW``); the connection goes to the
checked address itself, with the URL's host name for ``Host``, SNI and certificate checks; each
redirect is checked again; at most 50 MB and 60 s unless the caller says less.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
from puras.netguard import (
    FETCH_TIMEOUT_SECONDS,
    MAX_FETCH_BYTES,
    MAX_REDIRECTS,
    BlockedURL,
    FetchError,
    FetchTooLarge,
    Policy,
    Target,
    check_url,
)

__all__ = [
    "Answer",
    "BlockedURL",
    "FetchError",
    "FetchTooLarge",
    "GuardedResponse",
    "Policy",
    "checked",
    "fetch_bytes",
    "open_url",
    "post",
]


async def _resolve(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def _check(url: str, policy: Policy) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise BlockedURL(f"not a valid URL: {url!r} ({exc})") from None
    host = (parts.hostname or "").rstrip(".")
    addresses: list[str] = []
    if host and parts.scheme.lower() in ("http", "https") and not policy.trusts(url):
        addresses = await _resolve(host, port)
    return check_url(url, policy, resolve=lambda _h, _p: addresses)


@dataclass
class GuardedResponse:
    """A response whose body is read through :meth:`aiter_bytes`, capped at ``max_bytes``."""

    url: str
    """The final URL, after redirects."""
    response: httpx.Response
    max_bytes: int
    deadline: float

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def content_type(self) -> str | None:
        value: str | None = self.response.headers.get("content-type")
        return value

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        declared = self.response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchTooLarge(self.url, self.max_bytes)
        size = 0
        async for chunk in self.response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchTooLarge(self.url, self.max_bytes)
            if time.monotonic() > self.deadline:
                raise FetchError(f"fetching {self.url} took too long")
            yield chunk


@contextlib.asynccontextmanager
async def open_url(
    client: httpx.AsyncClient,
    url: str,
    *,
    policy: Policy | None = None,
    max_bytes: int = MAX_FETCH_BYTES,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[GuardedResponse]:
    """GET ``url`` under the guard and yield the final response (2xx); redirects are followed
    and re-checked. Raises :class:`BlockedURL`, :class:`FetchTooLarge` or :class:`FetchError`."""
    policy = policy or Policy.from_env()
    deadline = time.monotonic() + timeout
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        target = await _check(current, policy)
        request = _pinned_request(
            client, target, headers, timeout=max(0.1, deadline - time.monotonic())
        )
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException:
            raise FetchError(f"fetching {current} took longer than {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"fetching {current} failed: {exc}") from None
        try:
            if response.status_code in (301, 302, 303, 307, 308):
                location = response.headers.get("location")
                if not location:
                    raise FetchError(
                        f"{current} answered {response.status_code} without a Location"
                    )
                current = urljoin(current, location)
                continue
            if response.status_code >= 400:
                raise FetchError(f"{current} answered HTTP {response.status_code}")
            yield GuardedResponse(current, response, max_bytes, deadline)
            return
        finally:
            await response.aclose()
    raise FetchError(f"{url} redirected more than {MAX_REDIRECTS} times")


def _pinned_request(
    client: httpx.AsyncClient,
    target: Target,
    headers: dict[str, str] | None,
    *,
    timeout: float,
    method: str = "GET",
    content: bytes | None = None,
) -> httpx.Request:
    address = target.address
    host_in_url = f"[{address}]" if ":" in address else address
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    extensions: dict[str, object] = {}
    if target.scheme == "https" and address != target.host:
        extensions["sni_hostname"] = target.host
    return client.build_request(
        method,
        f"{target.scheme}://{host_in_url}:{target.port}{target.request_path}",
        headers={"Host": host_header, "User-Agent": "puras-fetch", **(headers or {})},
        content=content,
        timeout=httpx.Timeout(timeout),
        extensions=extensions,
    )


async def fetch_bytes(
    client: httpx.AsyncClient,
    url: str,
    *,
    policy: Policy | None = None,
    max_bytes: int = MAX_FETCH_BYTES,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    headers: dict[str, str] | None = None,
) -> tuple[bytes, str | None]:
    """The whole body (at most ``max_bytes``) and its content type."""
    async with open_url(
        client, url, policy=policy, max_bytes=max_bytes, timeout=timeout, headers=headers
    ) as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
        return body, response.content_type


@dataclass(frozen=True)
class Answer:
    """What a receiver answered to :func:`post`: its status and the start of its body."""

    status_code: int
    body: bytes
    """At most the ``max_bytes`` asked for; the rest is not read."""


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    policy: Policy | None = None,
    timeout: float = 15.0,
    max_bytes: int = 64 * 1024,
) -> Answer:
    """POST ``content`` to ``url`` under the guard, once: the address is checked before any
    connection, redirects are not followed (a 3xx is an answer like any other), and at most
    ``max_bytes`` of the answer are read within ``timeout``. Raises :class:`BlockedURL` or
    :class:`FetchError`."""
    policy = policy or Policy.from_env()
    deadline = time.monotonic() + timeout
    target = await _check(url, policy)
    request = _pinned_request(
        client, target, headers, timeout=timeout, method="POST", content=content
    )
    try:
        response = await client.send(request, stream=True, follow_redirects=False)
    except httpx.TimeoutException:
        raise FetchError(f"{url} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"sending to {url} failed: {type(exc).__name__}: {exc}") from None
    try:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= max_bytes or time.monotonic() > deadline:
                break
        return Answer(response.status_code, bytes(body[:max_bytes]))
    except httpx.HTTPError:
        return Answer(response.status_code, bytes(body[:max_bytes]))
    finally:
        await response.aclose()


async def checked(url: str, policy: Policy) -> Target:
    """``url`` as the guard sees it now (its host resolved): :class:`BlockedURL` if refused,
    :class:`FetchError` if the host does not resolve."""
    return await _check(url, policy)
