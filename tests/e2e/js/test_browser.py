"""The built SDK in headless Chromium, on a page served from another origin than the gateway,
with a publishable key: it runs a skill and renders the job's events as they stream in."""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import async_playwright
from puras_cli.engines import free_port
from puras_testing.platform import Platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAGE = Path(__file__).with_name("page")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class _Files(SimpleHTTPRequestHandler):
    """The page at ``/``, the built SDK under ``/sdk/``."""

    def __init__(self, *args: Any, dist: Path, **kwargs: Any) -> None:
        self.dist = dist
        super().__init__(*args, directory=str(PAGE), **kwargs)

    def translate_path(self, path: str) -> str:
        route = urlsplit(path).path
        if route.startswith("/sdk/"):
            name = route.removeprefix("/sdk/")
            return str(self.dist / name) if "/" not in name and ".." not in name else ""
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def app_origin(dist: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), functools.partial(_Files, dist=dist))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_page_on_another_origin_runs_a_skill_with_a_publishable_key(
    platform: Platform, js_tenant: dict[str, Any], js_sdk: Path
) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make test installs it when run as root)"
    key = js_tenant["publishable_key"]
    assert key.startswith("puras_pub_")
    with app_origin(js_sdk) as origin, tempfile.TemporaryDirectory() as profile:
        assert origin != platform.url
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page()
                requests: list[Any] = []
                page.on(
                    "request",
                    lambda r: requests.append(r) if r.url.startswith(platform.url) else None,
                )
                await page.goto(f"{origin}/#key={key}&api={platform.url}")
                await page.wait_for_selector(
                    "body[data-state=done], body[data-state=error]", timeout=60_000
                )
                status = await page.text_content("#status")
                assert status == "succeeded", status
                items = await page.eval_on_selector_all(
                    "#events li", "els => els.map(e => [Number(e.dataset.id), e.textContent])"
                )
                job_id = await page.get_attribute("body", "data-job")
                result = await page.text_content("#result")
                sent = [await r.all_headers() for r in requests]
            finally:
                await browser.close()
    texts = [text for _, text in items]
    assert texts[0] == "queued" and texts[-1] == "succeeded"
    assert [t for t in texts if t.startswith("log")] == ["log line 0", "log line 1", "log line 2"]
    assert result == '{"lines":3}'
    assert sent and all(h.get("origin") == origin for h in sent)
    reference = (await js_tenant["tenant"].http.get(f"/v1/jobs/{job_id}/events")).json()["events"]
    assert [i for i, _ in items] == [e["id"] for e in reference]
