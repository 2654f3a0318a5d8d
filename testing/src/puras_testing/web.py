"""A local web for tests: pages, files and redirects to fetch, and a search API that speaks the
Brave Search wire format (``/res/v1/web/search``, ``/res/v1/images/search``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from puras_testing.stubs import serve_app


@dataclass
class WebStub:
    base_url: str = ""
    pages: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    search_requests: list[dict[str, Any]] = field(default_factory=list)
    api_key: str = "stub-search-key"

    def page(
        self, path: str, body: bytes | str, content_type: str = "text/html; charset=utf-8"
    ) -> str:
        """Serve ``body`` at ``path``; returns its URL."""
        self.pages[path] = (body.encode() if isinstance(body, str) else body, content_type)
        return self.base_url + path

    def redirect(self, path: str, to: str) -> str:
        self.redirects[path] = to
        return self.base_url + path

    def env(self) -> dict[str, str]:
        """Agent runner settings pointing the search tools at this stub."""
        return {
            "PURAS_AGENT_RUNNER_SEARCH_API_KEY": self.api_key,
            "PURAS_AGENT_RUNNER_SEARCH_BASE_URL": f"{self.base_url}/res/v1",
        }

    async def _serve(self, request: Request) -> Response:
        path = request.url.path
        if path in self.redirects:
            return RedirectResponse(self.redirects[path], status_code=302)
        if path not in self.pages:
            return Response("not found", status_code=404)
        body, content_type = self.pages[path]
        return Response(body, media_type=content_type)

    def _authorised(self, request: Request) -> dict[str, Any] | None:
        seen = {
            "query": request.query_params.get("q"),
            "count": int(request.query_params.get("count", "0")),
            "token": request.headers.get("x-subscription-token"),
            "path": request.url.path,
        }
        self.search_requests.append(seen)
        return seen if seen["token"] == self.api_key else None

    async def _web(self, request: Request) -> Response:
        seen = self._authorised(request)
        if seen is None:
            return JSONResponse(
                {"type": "ErrorResponse", "error": {"code": "SUBSCRIPTION_TOKEN_INVALID"}},
                status_code=401,
            )
        results = [
            {
                "title": f"{seen['query']} result {i}",
                "url": f"https://example.com/{i}",
                "description": f"snippet {i}",
                "type": "search_result",
            }
            for i in range(1, 21)
        ]
        return JSONResponse(
            {
                "type": "search",
                "query": {"original": seen["query"]},
                "web": {"type": "search", "results": results[: seen["count"]]},
            }
        )

    async def _images(self, request: Request) -> Response:
        seen = self._authorised(request)
        if seen is None:
            return JSONResponse(
                {"type": "ErrorResponse", "error": {"code": "SUBSCRIPTION_TOKEN_INVALID"}},
                status_code=401,
            )
        results = [
            {
                "type": "image_result",
                "title": f"{seen['query']} image {i}",
                "url": f"https://example.com/page/{i}",
                "source": "example.com",
                "thumbnail": {
                    "src": f"https://imgs.example.com/thumb/{i}.jpg",
                    "width": 200,
                    "height": 150,
                },
                "properties": {
                    "url": f"https://cdn.example.com/{i}.jpg",
                    "width": 1600,
                    "height": 1200,
                },
            }
            for i in range(1, 21)
        ]
        return JSONResponse(
            {
                "type": "images",
                "query": {"original": seen["query"]},
                "results": results[: seen["count"]],
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/res/v1/web/search", self._web),
                Route("/res/v1/images/search", self._images),
                Route("/{rest:path}", self._serve),
            ]
        )


@contextlib.asynccontextmanager
async def web_stub() -> AsyncIterator[WebStub]:
    stub = WebStub()
    async with serve_app(stub.app()) as url:
        stub.base_url = url
        yield stub
