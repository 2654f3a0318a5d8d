"""The ops view of the one-machine platform: the admin-only JSON of every service's instances,
readiness, lag and counters, and the self-contained page that shows it."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from puras_common.access import SERVICES
from puras_testing.platform import Platform

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_only_the_admin_token_reads_the_ops_view(platform: Platform) -> None:
    tenant = await platform.tenant(f"ops-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=platform.url) as http:
        assert (await http.get("/v1/admin/ops")).status_code == 401
        assert (await tenant.http.get("/v1/admin/ops")).status_code in (401, 403)
        response = await http.get("/v1/admin/ops", headers=platform.admin_headers())
    assert response.status_code == 200
    services = response.json()["services"]
    assert set(services) == set(SERVICES)
    for name, service in services.items():
        assert service["up"] >= 1 and service["ready"] >= 1, name
        instances = service["instances"]
        assert all(i["service"] == name and i["status"] == "ok" for i in instances)
        assert all("service_ready" in i["stats"] for i in instances)
        assert any(i["ops_port"] for i in instances), instances
    assert "queue_depth:ready" in services["scheduler"]["instances"][0]["stats"]


async def test_the_page_is_self_contained(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url) as http:
        response = await http.get("/admin/ops")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert "/v1/admin/ops" in page
    # No asset from anywhere else: no external src or href, no protocol-relative URL.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script src" not in page and "<link" not in page
