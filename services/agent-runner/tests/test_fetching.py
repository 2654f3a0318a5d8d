"""The SSRF guard on the fetches the platform makes for a job: the agent's fetcher is the
platform's one guard (:mod:`puras_common.ssrf`, tested in full in puras-common)."""

from __future__ import annotations

import pytest
from puras.netguard import Policy
from puras_agent_runner.fetching import BlockedAddress, Fetcher, FetchError
from puras_testing.web import WebStub

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOSTILE = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://0.0.0.0/",
    "http://10.0.0.5/",
    "http://172.16.3.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
]


@pytest.mark.parametrize("url", HOSTILE)
async def test_internal_addresses_are_refused(url: str) -> None:
    fetcher = Fetcher(policy=Policy(), timeout_seconds=2)
    try:
        with pytest.raises(BlockedAddress, match="refusing to fetch from"):
            await fetcher.get(url, max_bytes=1024)
    finally:
        await fetcher.aclose()


async def test_a_redirect_to_an_internal_address_is_refused(web: WebStub) -> None:
    # The stub is on loopback: trust its host name so the first hop passes and the redirect's
    # target is what the guard judges.
    fetcher = Fetcher(policy=Policy.parse("", trusted_origins=[web.base_url]), timeout_seconds=2)
    try:
        assert (
            await fetcher.get(web.page("/fine.txt", "fine", "text/plain"), max_bytes=1024)
        ).body == b"fine"
        for target in ("http://169.254.169.254/", "http://localhost/", "http://[::1]/"):
            with pytest.raises(BlockedAddress):
                await fetcher.get(web.redirect(f"/to-{target}", target), max_bytes=1024)
    finally:
        await fetcher.aclose()


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://example.com/", "ftp://example.com/x"]
)
async def test_only_http_and_https_are_fetched(url: str) -> None:
    fetcher = Fetcher(policy=Policy())
    try:
        with pytest.raises(FetchError, match="only http and https URLs can be fetched"):
            await fetcher.get(url, max_bytes=1024)
    finally:
        await fetcher.aclose()


async def test_the_checked_address_is_the_one_connected_to(web: WebStub) -> None:
    url = web.page("/pinned.txt", "pinned", "text/plain").replace("127.0.0.1", "localhost")
    fetcher = Fetcher(policy=Policy.parse("127.0.0.0/8,::1/128"), timeout_seconds=5)
    try:
        page = await fetcher.get(url, max_bytes=1024)
    finally:
        await fetcher.aclose()
    assert page.body == b"pinned" and page.url == url and page.content_type == "text/plain"
