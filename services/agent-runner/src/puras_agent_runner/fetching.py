"""HTTP GETs the platform makes on a job's behalf (``web_fetch``, ``download_url``, attachment
URLs), through the platform's one SSRF guard (:mod:`puras_common.ssrf`, whose policy the in-job
SDK shares): http(s) only; every address a host resolves to must be public or in
``PURAS_SSRF_ALLOW``; the connection goes to the checked address; each redirect (at most 5) is
checked again."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from puras_common.ssrf import BlockedURL, FetchError, FetchTooLarge, Policy, open_url

BlockedAddress = BlockedURL
"""The URL leads to an address the guard refuses."""
TooLarge = FetchTooLarge

__all__ = ["BlockedAddress", "FetchError", "Fetched", "Fetcher", "TooLarge"]


@dataclass(frozen=True)
class Fetched:
    url: str
    """The final URL, after redirects."""
    status: int
    content_type: str
    """The media type, without parameters, lower-cased."""
    charset: str | None
    body: bytes


class Fetcher:
    """GETs through the guard; one per process, shared by every job."""

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        timeout_seconds: float = 60.0,
        user_agent: str = "Puras-Agent/1.0",
    ) -> None:
        self.policy = policy or Policy.from_env()
        self.timeout_seconds = timeout_seconds
        self.user_agent = user_agent
        self.client = httpx.AsyncClient(follow_redirects=False)

    async def get(self, url: str, *, max_bytes: int) -> Fetched:
        """GET ``url``, refusing bodies over ``max_bytes``; FetchError (BlockedAddress, TooLarge)."""
        async with open_url(
            self.client,
            url,
            policy=self.policy,
            max_bytes=max_bytes,
            timeout=self.timeout_seconds,
            headers={"User-Agent": self.user_agent},
        ) as response:
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
            media, _, params = (response.content_type or "application/octet-stream").partition(";")
            status, final = response.status_code, response.url
        charset = None
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"').lower()
        return Fetched(final, status, media.strip().lower(), charset, body)

    async def aclose(self) -> None:
        await self.client.aclose()
