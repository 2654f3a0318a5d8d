"""The in-job fetcher's SSRF guard: every hostile URL of the corpus is refused, redirects to
them too, and allowed fetches keep to the size cap at its edge."""

from __future__ import annotations

import io
import ipaddress

import pytest
from puras import netguard
from puras_testing.ssrf import HOSTILE_URLS, LoopbackSite, loopback_site

ONLY_SITE = netguard.Policy.parse("127.0.0.2/32")


@pytest.fixture(scope="module")
def site() -> LoopbackSite:
    with loopback_site(big_bytes=netguard.MAX_FETCH_BYTES + 1) as running:
        yield running


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_urls_are_refused(url: str) -> None:
    with pytest.raises(netguard.FetchError) as caught:
        netguard.fetch(url, io.BytesIO(), policy=netguard.Policy())
    assert isinstance(caught.value, netguard.BlockedURL), caught.value


@pytest.mark.parametrize(
    "url", [u for u in HOSTILE_URLS if u.startswith("http://") and "@" not in u]
)
def test_redirects_to_hostile_urls_are_refused(site: LoopbackSite, url: str) -> None:
    with pytest.raises(netguard.BlockedURL):
        netguard.fetch(site.redirect(url), io.BytesIO(), policy=ONLY_SITE)


def test_a_redirect_back_to_the_site_itself_is_followed(site: LoopbackSite) -> None:
    sink = io.BytesIO()
    assert netguard.fetch(site.redirect(f"{site.base}/ok"), sink, policy=ONLY_SITE) == "image/png"
    assert sink.getvalue() == b"fetched!"


def test_the_site_itself_is_refused_until_an_operator_allows_it(site: LoopbackSite) -> None:
    with pytest.raises(netguard.BlockedURL, match="loopback"):
        netguard.fetch(f"{site.base}/ok", io.BytesIO(), policy=netguard.Policy())
    for relaxed in ("127.0.0.0/8", "*"):
        sink = io.BytesIO()
        netguard.fetch(f"{site.base}/ok", sink, policy=netguard.Policy.parse(relaxed))
        assert sink.getvalue() == b"fetched!"


def test_the_size_cap_holds_at_its_edge(site: LoopbackSite) -> None:
    limit = netguard.MAX_FETCH_BYTES
    with pytest.raises(netguard.FetchTooLarge, match=str(limit)):
        netguard.fetch(f"{site.base}/big", io.BytesIO(), policy=ONLY_SITE)
    sink = io.BytesIO()
    netguard.fetch(f"{site.base}/ok", sink, policy=ONLY_SITE, max_bytes=len(b"fetched!"))
    with pytest.raises(netguard.FetchTooLarge):
        netguard.fetch(
            f"{site.base}/ok", io.BytesIO(), policy=ONLY_SITE, max_bytes=len(b"fetched!") - 1
        )


def test_a_server_that_never_answers_times_out(site: LoopbackSite) -> None:
    with pytest.raises(netguard.FetchError, match=r"longer than 0\.5 s"):
        netguard.fetch(f"{site.base}/slow", io.BytesIO(), policy=ONLY_SITE, timeout=0.5)


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("8.8.8.8", False),
        ("2606:4700::1111", False),
        ("::ffff:8.8.8.8", False),
        ("::ffff:10.1.1.1", True),
        ("169.254.169.254", True),
        ("fc00::1", True),
        ("100.100.100.200", True),
        ("198.18.0.1", True),
    ],
)
def test_address_policy(address: str, blocked: bool) -> None:
    assert (netguard.why_blocked(ipaddress.ip_address(address)) is not None) is blocked


def test_a_bad_allow_list_is_an_error_that_says_so() -> None:
    with pytest.raises(ValueError, match="PURAS_SSRF_ALLOW"):
        netguard.Policy.parse("not-a-network")
