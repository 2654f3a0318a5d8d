"""Signed links and the files they serve: a link's address is parsed before anything is
relayed, the relay carries only the link's own signature, and what is served is inert in a
browser (a download unless it is a raster image, audio, video, PDF or plain text)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from puras_testing.metrics import scrape, value
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

SANDBOX = "sandbox; default-src 'none'"


async def raw_get(base: str, target: str) -> tuple[int, bytes]:
    """``GET target`` sent byte for byte (an HTTP client would remove its dot segments)."""
    parts = urlsplit(base)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def drive_requests(platform: Platform) -> float:
    """How many HTTP requests the drive service has answered, by its own metrics."""
    return value(await scrape(platform, "drive"), "puras_http_requests_total", service="drive")


async def upload(tenant: Tenant, path: str, data: bytes, content_type: str) -> dict[str, Any]:
    response = await tenant.http.post(
        "/v1/drive/upload",
        files=[("file", ("f", data, content_type)), ("path", (None, path))],
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def victim(platform: Platform) -> Tenant:
    return await platform.tenant(f"victim-{uuid.uuid4().hex[:8]}")


async def test_a_traversal_through_the_signed_link_route_is_404_and_reaches_no_service(
    platform: Platform, victim: Tenant
) -> None:
    await upload(victim, "private/plans.txt", b"the victim's plans", "text/plain")
    ws = victim.id
    hostile = [
        f"/v1/drive/files/%2e%2e/drive/{ws}/list",
        f"/v1/drive/files/%2E%2E/drive/{ws}/zip",
        f"/v1/drive/files/../drive/{ws}/list",
        f"/v1/drive/files/%2e%2e/drive/{ws}/mount",
        f"/v1/drive/files/%2e%2e/payloads/{ws}",
        f"/v1/drive/files/{ws}/../../drive/{ws}/list",
        f"/v1/drive/files/{ws}/%2e%2e/%2e%2e/drive/{ws}/list",
        f"/v1/drive/files/{ws}/..%2f..%2fdrive%2f{ws}%2flist",
        f"/v1/drive/files/{ws}/private%2fplans.txt",
        f"/v1/drive/files/{ws}/private/./plans.txt",
        f"/v1/drive/files/{ws}/private//plans.txt",
        f"/v1/drive/files/{ws}/private%5cplans.txt",
        f"/v1/drive/files/{ws}/private/plans.txt%00",
        f"/v1/drive/files/{ws}/private/%252e%252e/plans.txt",
        f"/v1/drive/files/{ws.upper()}/private/plans.txt",
        f"/v1/drive/files/{ws.replace('-', '')}/private/plans.txt",
        "/v1/drive/files/default/private/plans.txt",
    ]
    before = await drive_requests(platform)
    for target in hostile:
        status, body = await raw_get(platform.url, target)
        assert status == 404, (target, body)
        assert b"the victim's plans" not in body and ws.encode() not in body, target
    assert await drive_requests(platform) == before, "a refused link was relayed to the drive"


async def test_the_drive_serves_a_link_on_its_signature_alone(
    platform: Platform, victim: Tenant
) -> None:
    link = (await upload(victim, "a/b.txt", b"bee", "text/plain"))["signed_url"]
    drive = f"http://127.0.0.1:{platform.config.ports['drive']}"
    _, _, rest = link.partition("/v1/drive/files/")
    async with httpx.AsyncClient(base_url=drive) as http:
        # The link route needs no platform credential, and opens only what was signed.
        served = await http.get(f"/links/{rest}")
        assert served.status_code == 200 and served.content == b"bee"
        unsigned = await http.get(f"/links/{victim.id}/a/b.txt")
        assert unsigned.status_code == 403
        for moved in ("a/./b.txt", "a//b.txt", "x/../a/b.txt"):
            status, _ = await raw_get(drive, f"/links/{rest.replace('a/b.txt', moved)}")
            assert status == 404, moved
        # Everything else on the drive's listener still wants the internal token.
        listing = await http.get(f"/internal/drive/{victim.id}/list")
        assert listing.status_code in (401, 403)


@pytest.mark.parametrize(
    ("name", "content_type", "inline"),
    [
        ("page.html", "text/html", False),
        ("logo.svg", "image/svg+xml", False),
        ("feed.xml", "application/xml", False),
        ("app.js", "text/javascript", False),
        ("data.json", "application/json", False),
        ("blob.bin", "application/octet-stream", False),
        ("shot.png", "image/png", True),
        ("photo.jpg", "image/jpeg", True),
        ("clip.mp4", "video/mp4", True),
        ("voice.mp3", "audio/mpeg", True),
        ("paper.pdf", "application/pdf", True),
        ("notes.txt", "text/plain; charset=utf-8", True),
    ],
)
async def test_served_files_are_inert_and_only_safe_types_are_inline(
    victim: Tenant, name: str, content_type: str, inline: bool
) -> None:
    payload = b"<html><script>alert(document.cookie)</script></html>"
    link = (await upload(victim, f"served/{name}", payload, content_type))["signed_url"]
    async with httpx.AsyncClient() as http:
        response = await http.get(link)
    assert response.status_code == 200 and response.content == payload
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("inline;" if inline else "attachment;"), disposition
    assert f'filename="{name}"' in disposition
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == SANDBOX


async def test_every_drive_answer_carries_the_inert_headers(
    platform: Platform, victim: Tenant
) -> None:
    await upload(victim, "z/one.txt", b"1", "text/plain")
    answers = [
        await victim.http.get("/v1/drive/list"),
        await victim.http.get("/v1/drive/sign", params={"path": "z/one.txt"}),
        await victim.http.get("/v1/drive/sign", params={"path": "z/none.txt"}),
        await victim.http.get("/v1/drive/zip", params={"prefix": "z"}),
        await victim.http.get("/v1/drive/origin", params={"path": "../x"}),
    ]
    async with httpx.AsyncClient(base_url=platform.url) as anonymous:
        answers.append(await anonymous.get("/v1/drive/list"))
        answers.append(await anonymous.get(f"/v1/drive/files/{victim.id}/z/one.txt"))
    assert [a.status_code for a in answers] == [200, 200, 404, 200, 400, 401, 403]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url
        assert answer.headers["content-security-policy"] == SANDBOX, answer.request.url
    assert answers[3].headers["content-disposition"].startswith("attachment;")
