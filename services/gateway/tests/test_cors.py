"""``PURAS_GATEWAY_CORS_ORIGINS`` narrows the origins a browser may call the API from."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from puras_gateway.app import create_app
from puras_gateway.context import Gateway
from puras_gateway.settings import GatewaySettings


def preflight(cors_origins: str, origin: str) -> httpx.Response:
    # The CORS middleware answers preflights before any route, so no services are needed.
    app = create_app(
        cast(Gateway, SimpleNamespace(settings=GatewaySettings(cors_origins=cors_origins)))
    )
    transport = httpx.ASGITransport(app=cast(Any, app))

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            return await http.options(
                "/v1/jobs",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            )

    return asyncio.run(send())


def test_a_listed_origin_is_allowed_and_another_refused() -> None:
    listed = "https://app.example.com, https://admin.example.com/"
    ok = preflight(listed, "https://admin.example.com")
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://admin.example.com"
    refused = preflight(listed, "https://evil.example.net")
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize("setting", ["", " , "])
def test_an_empty_setting_allows_no_cross_origin_calls(setting: str) -> None:
    response = preflight(setting, "https://app.example.com")
    assert "access-control-allow-origin" not in response.headers
