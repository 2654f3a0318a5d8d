"""The platform's async fetcher under the same SSRF corpus as the in-job SDK's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from puras_common import ssrf
from puras_testing.ssrf import HOSTILE_URLS, LoopbackSite, loopback_site

ONLY_SITE = ssrf.Policy.parse("127.0.0.2/32")


@pytest.fixture(scope="module")
def site() -> Iterator[LoopbackSite]:
    with loopback_site(big_bytes=52_428_801) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


@pytest.mark.parametrize("url", HOSTILE_URLS)
async def test_hostile_urls_are_refused(client: httpx.AsyncClient, url: str) -> None:
    with pytest.raises(ssrf.BlockedURL):
        await ssrf.fetch_bytes(client, url, policy=ssrf.Policy())


@pytest.mark.parametrize(
    "url", [u for u in HOSTILE_URLS if u.startswith("http://") and "@" not in u]
)
async def test_redirects_to_hostile_urls_are_refused(
    client: httpx.AsyncClient, site: LoopbackSite, url: str
) -> None:
    # httpx itself refuses a Location it cannot parse (``127.000.000.001``); the guard refuses the rest.
    with pytest.raises(ssrf.FetchError):
        await ssrf.fetch_bytes(client, site.redirect(url), policy=ONLY_SITE)


async def test_allowed_fetches_follow_checked_redirects_and_keep_to_the_cap(
    client: httpx.AsyncClient, site: LoopbackSite
) -> None:
    body, content_type = await ssrf.fetch_bytes(
        client, site.redirect(f"{site.base}/ok"), policy=ONLY_SITE
    )
    assert (body, content_type) == (b"fetched!", "image/png")
    with pytest.raises(ssrf.FetchTooLarge):
        await ssrf.fetch_bytes(client, f"{site.base}/big", policy=ONLY_SITE)
    assert (await ssrf.fetch_bytes(client, f"{site.base}/ok", policy=ONLY_SITE, max_bytes=8))[
        0
    ] == b"fetched!"
    with pytest.raises(ssrf.FetchTooLarge):
        await ssrf.fetch_bytes(client, f"{site.base}/ok", policy=ONLY_SITE, max_bytes=7)
    with pytest.raises(ssrf.FetchError, match="longer than"):
        await ssrf.fetch_bytes(client, f"{site.base}/slow", policy=ONLY_SITE, timeout=0.5)
