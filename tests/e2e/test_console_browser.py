"""The console in headless Chromium (Debian's package, driven by Playwright): a person signs in,
pushes a project, runs a skill from the playground with an image upload while its events stream,
creates and revokes a key and sets a secret, all through the pages. Any error in the browser's
console fails the test.

The tests also take a screenshot of every page (light, dark, and at phone width): into a
temporary directory, or into ``PURAS_CONSOLE_SCREENSHOTS`` (``docs/console`` to refresh the
documentation's).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from nats.js import JetStreamContext
from playwright.async_api import Browser, Page, async_playwright, expect
from puras_common.bus import publish
from puras_common.events import UsageRecordedPayload
from puras_pricing import pricebook, usage_events
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import Platform, Tenant


def _load(name: str) -> Any:
    """A helper module beside this one (the suite imports tests by path, not as packages)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


console_project = _load("console_project")
drive_project = _load("drive_project")

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "the console's own password"
WIDE = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


class Console:
    """One signed-in browser page on the console, and the errors its console printed."""

    def __init__(self, platform: Platform, tenant: Tenant, page: Page, shots: Path) -> None:
        self.platform = platform
        self.tenant = tenant
        self.page = page
        self.shots = shots
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("dialog", lambda d: d.accept())

    def url(self, path: str = "") -> str:
        return f"{self.platform.url}/console/{self.tenant.slug}{path}"

    async def open(self, path: str = "") -> None:
        await self.page.goto(self.url(path))
        await self.page.wait_for_load_state("networkidle")

    async def shot(self, name: str, *, theme: str = "light", full: bool = True) -> None:
        """A screenshot; ``full`` grows the window to the page's height first, so the sidebar
        spans the whole picture."""
        page = self.page
        await page.evaluate(
            """theme => {
                document.documentElement.dataset.theme = theme;
                document.querySelectorAll(".toast").forEach((t) => t.remove());
            }""",
            theme,
        )
        await page.wait_for_load_state("networkidle")
        size = page.viewport_size
        assert size is not None
        if full:
            height = await page.evaluate("document.documentElement.scrollHeight")
            await page.set_viewport_size(
                {"width": size["width"], "height": max(size["height"], height)}
            )
        await page.screenshot(path=str(self.shots / f"{name}.png"))
        await page.set_viewport_size(size)

    def assert_clean(self) -> None:
        assert self.errors == [], f"the browser's console printed errors: {self.errors}"


@pytest.fixture(scope="module")
def shots() -> Path:
    target = os.environ.get("PURAS_CONSOLE_SCREENSHOTS")
    path = Path(target) if target else Path(tempfile.mkdtemp(prefix="console-shots-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make test installs it when run as root)"
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def console(platform: Platform, browser: Browser, shots: Path) -> AsyncIterator[Console]:
    tenant = await platform.tenant(f"shop-{uuid.uuid4().hex[:6]}", credit_usd="25")
    await platform.add_user(tenant.slug, f"ada@{tenant.slug}.example", password=PASSWORD)
    context = await browser.new_context(viewport=WIDE, color_scheme="light")
    page = await context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield Console(platform, tenant, page, shots)
    finally:
        await context.close()


async def test_a_person_signs_in(console: Console) -> None:
    page = console.page
    await page.goto(f"{console.platform.url}/console")
    await expect(page).to_have_url(f"{console.platform.url}/console/login")
    await console.shot("login")
    await page.fill("input[name=email]", f"ada@{console.tenant.slug}.example")
    await page.fill("input[name=password]", "not the password")
    await page.click("button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text("wrong email or password")
    console.errors.clear()  # the refused sign-in's 401 is expected
    await page.fill("input[name=password]", PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(console.url())
    await expect(page.locator("#balance")).to_have_text("$25.00")
    console.assert_clean()


async def test_pushing_a_project_shows_its_versions_and_skills(console: Console) -> None:
    page = console.page
    await console.open("/deployments")
    await page.set_input_files(
        "#bundle",
        files=[
            {"name": "shop.zip", "mimeType": "application/zip", "buffer": console_project.bundle()}
        ],
    )
    await page.fill("input[name=notes]", "first cut of the shop")
    await page.click("#push-form button[type=submit]")
    await expect(page.locator("#push-status")).to_contain_text("version 1 of default is active")
    await expect(page.locator("#build-log")).to_contain_text("frame")
    version = page.locator("#versions details").first
    await expect(version).to_contain_text("v1")
    await expect(version).to_contain_text("first cut of the shop")
    for skill in ("frame", "greet", "ask"):
        await expect(version.locator("td strong", has_text=skill)).to_be_visible()
    await version.locator("details.schema summary").first.click()
    await expect(version.locator("details.schema pre").first).to_contain_text("x-puras")
    listed = (await console.tenant.http.get("/v1/deployments")).json()["data"]
    assert [(d["version"], d["active"]) for d in listed] == [(1, True)]
    console.assert_clean()


async def test_the_playground_runs_a_skill_with_an_uploaded_image(console: Console) -> None:
    page = console.page
    await console.open("/playground?skill=frame")
    await expect(page.locator("#skill")).to_have_value("frame")
    image = drive_project.png(96, 64)
    await page.set_input_files(
        "#f-photo", files=[{"name": "poster.png", "mimeType": "image/png", "buffer": image}]
    )
    chip = page.locator("[data-field=photo] .file-chip[data-drive-path]")
    await expect(chip).to_contain_text("uploads/")
    drive_path = (await chip.text_content() or "").strip()
    await page.fill("#f-title", "Summer sale")
    await page.select_option("#f-style", label="polaroid")
    await expect(page.locator("#f-copies")).to_have_attribute("max", "4")
    await page.fill("#f-copies", "3")
    await expect(page.locator("#snippet")).to_contain_text(drive_path)
    await page.click("#run")
    events = page.locator("#run-events li")
    await expect(events.filter(has_text="framing copy 1")).to_be_visible()
    await expect(page.locator("#run-state")).to_have_text("succeeded", timeout=60_000)
    types = await events.locator(".ev-type").all_text_contents()
    assert types[0] == "queued" and types[-1] == "succeeded", types
    assert types.count("log") >= 4, types
    framed = page.locator("#run-output img")
    await expect(framed).to_be_visible()
    assert await framed.evaluate("img => img.complete && img.naturalWidth") == 96
    await expect(page.locator("#run-output")).to_contain_text("Summer sale")
    await console.shot("playground")
    await console.shot("playground-dark", theme="dark")
    job_href = await page.locator("#run-link").get_attribute("href")
    assert job_href
    job = (await console.tenant.http.get(f"/v1/jobs/{job_href.rsplit('/', 1)[1]}")).json()
    assert job["result"]["bytes"] == len(image) and job["result"]["title"] == "Summer sale"
    assert job["outputs"][0]["drive_path"] == "renders/" + Path(drive_path).stem + "-polaroid.png"
    console.assert_clean()


async def test_a_key_is_created_once_and_revoked(console: Console) -> None:
    page = console.page
    await console.open("/keys")
    await page.click("#new-key")
    await page.check("input[name=kind][value=publishable]")
    await page.fill("input[name=name]", "storefront")
    await page.fill("input[name=allowed_skills]", "frame, greet")
    await page.fill("input[name=daily_cap]", "2.5")
    await page.click("#create-key")
    shown = page.locator("#key-value")
    await expect(shown).to_contain_text("puras_pub_")
    key = (await shown.text_content() or "").strip()
    await console.shot("keys-created", full=False)
    await page.click("#key-shown button[value=done]")
    row = page.locator("#key-list tr", has_text="storefront")
    await expect(row).to_contain_text("$2.50")
    await expect(row).to_contain_text("frame, greet")
    async with httpx.AsyncClient(
        base_url=console.platform.url, headers={"Authorization": f"Bearer {key}"}
    ) as app:
        allowed = await app.post("/v1/jobs", json={"skill": "greet", "inputs": {"name": "x"}})
        assert allowed.status_code == 201, allowed.text
        await row.locator("button", has_text="Revoke").click()
        await expect(row).to_contain_text("revoked")
        refused = await app.post("/v1/jobs", json={"skill": "greet", "inputs": {"name": "x"}})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "revoked_key"
    assert key not in await page.content()  # shown once: gone from the page
    console.assert_clean()


async def test_a_secret_is_set_and_never_shown(console: Console) -> None:
    page = console.page
    await console.open("/secrets")
    await page.fill("#secret-form input[name=name]", "GREETING")
    await page.fill("#secret-form input[name=value]", "Merhaba")
    await page.click("#secret-form button[type=submit]")
    await expect(page.locator("#secret-list")).to_contain_text("GREETING")
    assert "Merhaba" not in await page.content()
    job = await console.tenant.run("greet", {"name": "Ada"})
    assert job["result"] == {"to": "Ada", "greeting_chars": 7, "reversed": "abahreM"}
    console.assert_clean()


async def seed_usage(tenant: Tenant, js: JetStreamContext) -> None:
    """Billed calls over the past fortnight, as runners report them, for the charts."""
    book = pricebook()
    for days_ago, model, tokens in (
        (12, "claude/sonnet-4-7", 90_000),
        (9, "gpt/5-mini", 240_000),
        (6, "claude/sonnet-4-7", 150_000),
        (4, "gemini/2.5-flash", 400_000),
        (2, "claude/haiku-4-5", 300_000),
        (1, "claude/sonnet-4-7", 60_000),
    ):
        usage = UsageRecordedPayload(
            kind="llm", provider="seed", model=model, input_tokens=tokens, output_tokens=tokens // 8
        )
        events, _ = usage_events(book, usage, workspace_id=uuid.UUID(tenant.id), producer="seed")
        when = datetime.now(UTC) - timedelta(days=days_ago)
        await publish(js, [e.model_copy(update={"occurred_at": when}) for e in events])


async def test_an_agent_job_streams_its_steps_on_the_job_page(
    console: Console, model_provider: ModelStub, js: JetStreamContext
) -> None:
    page = console.page
    model_provider.script(
        Reply(
            text="Checking the catalogue first.",
            tool_calls=[Call("bash", {"command": "echo 3 frames in stock"})],
            input_tokens=1800,
            output_tokens=120,
        ),
        Reply(
            tool_calls=[Call("set_output", {"answer": "Three frames are in stock."})],
            input_tokens=2100,
            output_tokens=60,
        ),
        match="console-ask",
    )
    submitted = await console.tenant.http.post(
        "/v1/jobs", json={"skill": "ask", "inputs": {"question": "How many frames?"}}
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    await console.open(f"/jobs/{job_id}")
    await expect(page.locator("#stream-state")).to_have_text("ended", timeout=60_000)
    timeline = page.locator("#timeline")
    await expect(timeline.locator(".ev-tool_call").first).to_contain_text("bash")
    await expect(timeline.locator(".ev-tool_result").first).to_contain_text("3 frames in stock")
    await expect(timeline.locator(".ev-usage").first).to_contain_text("claude/sonnet-4-7")
    await expect(page.locator("#result")).to_contain_text("Three frames are in stock.")
    await expect(page.locator("#cost")).to_contain_text("claude/sonnet-4-7")
    await page.click("button.thumb[data-rating='1']")
    await page.fill("#feedback-form textarea", "Right answer")
    await page.click("#feedback-form button[type=submit]")
    await expect(page.locator("#feedback-list")).to_contain_text("Right answer")
    await seed_usage(console.tenant, js)
    await console.shot("job")
    await console.shot("job-dark", theme="dark")
    console.assert_clean()


async def test_a_waiting_job_shows_its_question_and_takes_the_answer(
    console: Console, model_provider: ModelStub
) -> None:
    page = console.page
    model_provider.script(
        Reply(
            tool_calls=[
                Call(
                    "request_input",
                    {
                        "question": "Which frame size?",
                        "schema": {"type": "string", "enum": ["S", "M"]},
                    },
                )
            ]
        ),
        Reply(tool_calls=[Call("set_output", {"answer": "Size M it is."})]),
        match="console-ask",
    )
    submitted = await console.tenant.http.post(
        "/v1/jobs", json={"skill": "ask", "inputs": {"question": "Which size fits?"}}
    )
    assert submitted.status_code == 201, submitted.text
    await console.open(f"/jobs/{submitted.json()['id']}")
    question = page.locator("#input-request")
    await expect(question).to_be_visible(timeout=60_000)
    await expect(page.locator("#input-prompt")).to_have_text("Which frame size?")
    await page.fill("#input-form textarea", "L")
    await page.click("#input-form button[type=submit]")
    await expect(page.locator("#input-error")).to_contain_text("/answer")
    console.errors.clear()  # the refused answer's 400 is expected
    await page.fill("#input-form textarea", "M")
    await page.click("#input-form button[type=submit]")
    await expect(page.locator("#result")).to_contain_text("Size M it is.", timeout=60_000)
    await expect(question).to_be_hidden()
    await expect(page.locator("#timeline .ev-input_requested")).to_contain_text("Which frame size?")
    console.assert_clean()


async def test_every_page_renders_without_errors(console: Console) -> None:
    page = console.page
    # A folder and a file the person uploads, beside what the skill wrote.
    await console.open("/drive")
    await page.set_input_files(
        "#upload",
        files=[{"name": "brief.txt", "mimeType": "text/plain", "buffer": b"Frame it in oak.\n"}],
    )
    await expect(page.locator("#toasts")).to_contain_text("Uploaded uploads/brief.txt")
    await page.locator("#drive-list a", has_text="renders").click()
    origin = page.locator("#drive-list tbody tr td:nth-child(4)").first
    await expect(origin).to_contain_text("frame")  # written by a job of the skill frame
    await expect(origin.locator("a")).to_have_attribute("href", re.compile("/jobs/"))
    await page.locator("#drive-list button", has_text="Preview").first.click()
    await expect(page.locator("#preview-body img")).to_be_visible()
    await page.click("#sign-link")
    await expect(page.locator("#link-value")).to_contain_text("/v1/drive/files/")
    await console.shot("drive-preview", full=False)
    await page.click("#preview button[value=close]")
    await console.open("/members")
    await page.fill("#invite-member input[name=email]", "grace@example.com")
    await page.click("#invite-member button[type=submit]")
    await expect(page.locator("#invite-url")).to_contain_text("/console/invite#")
    for name, path in (
        ("overview", ""),
        ("deployments", "/deployments"),
        ("jobs", "/jobs"),
        ("usage", "/usage"),
        ("keys", "/keys"),
        ("secrets", "/secrets"),
        ("drive", "/drive?prefix=renders/"),
        ("members", "/members"),
    ):
        await console.open(path)
        await console.shot(name)
    await console.open("")
    await expect(page.locator("#chart-models")).to_contain_text("claude/sonnet-4-7")
    await console.shot("overview-dark", theme="dark")
    await page.set_viewport_size(PHONE)
    for name, path in (("overview-phone", ""), ("jobs-phone", "/jobs")):
        await console.open(path)
        await console.shot(name, theme="light", full=False)
    await page.set_viewport_size(WIDE)
    console.assert_clean()


async def test_the_api_reference_renders_offline(console: Console) -> None:
    page = console.page
    external: list[str] = []
    page.on(
        "request",
        lambda r: external.append(r.url) if not r.url.startswith(console.platform.url) else None,
    )
    await page.goto(f"{console.platform.url}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Puras API")
    await expect(page.locator(".opblock-tag", has_text="sessions")).to_be_visible()
    assert [u for u in external if not u.startswith("data:")] == []
    await console.shot("docs", full=False)
    console.assert_clean()
