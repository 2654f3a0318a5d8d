"""The search provider behind ``web_search`` and ``image_search``: one interface, an adapter
for the Brave Search API (operator key, ``PURAS_SEARCH_API_KEY``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx


class SearchError(Exception):
    """The search provider failed; the message says how."""


@dataclass(frozen=True)
class WebResult:
    title: str
    url: str
    snippet: str


@dataclass(frozen=True)
class ImageResult:
    title: str
    image_url: str
    thumbnail_url: str | None
    width: int | None
    height: int | None
    source_page: str | None


class SearchProvider(Protocol):
    async def web(self, query: str, *, max_results: int) -> list[WebResult]: ...

    async def images(self, query: str, *, max_results: int) -> list[ImageResult]: ...

    async def aclose(self) -> None: ...


class BraveSearch:
    """Brave Search API: ``GET /web/search`` and ``GET /images/search`` with X-Subscription-Token."""

    def __init__(self, *, api_key: str, base_url: str, timeout_seconds: float = 20.0) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            timeout=timeout_seconds,
            headers={"X-Subscription-Token": api_key, "Accept": "application/json"},
        )

    async def _get(self, path: str, query: str, count: int) -> dict[str, Any]:
        try:
            response = await self.client.get(path, params={"q": query, "count": count})
        except httpx.HTTPError as exc:
            raise SearchError(
                f"the search provider could not be reached: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise SearchError(
                f"the search provider answered {response.status_code}: {response.text[:300]}"
            )
        answer: dict[str, Any] = response.json()
        return answer

    async def web(self, query: str, *, max_results: int) -> list[WebResult]:
        data = await self._get("web/search", query, max_results)
        rows = (data.get("web") or {}).get("results") or []
        return [
            WebResult(r.get("title", ""), r.get("url", ""), r.get("description", ""))
            for r in rows[:max_results]
        ]

    async def images(self, query: str, *, max_results: int) -> list[ImageResult]:
        data = await self._get("images/search", query, max_results)
        out = []
        for r in (data.get("results") or [])[:max_results]:
            props = r.get("properties") or {}
            thumb = r.get("thumbnail") or {}
            out.append(
                ImageResult(
                    title=r.get("title", ""),
                    image_url=props.get("url") or thumb.get("src", ""),
                    thumbnail_url=thumb.get("src"),
                    width=props.get("width") or thumb.get("width"),
                    height=props.get("height") or thumb.get("height"),
                    source_page=r.get("url"),
                )
            )
        return out

    async def aclose(self) -> None:
        await self.client.aclose()


def search_provider(kind: str, *, api_key: str, base_url: str) -> SearchProvider | None:
    """The configured provider, or None when no key is set (the search tools then say so)."""
    if not api_key:
        return None
    if kind != "brave":
        raise ValueError(f"unknown search provider {kind!r}; supported: brave")
    return BraveSearch(api_key=api_key, base_url=base_url)
