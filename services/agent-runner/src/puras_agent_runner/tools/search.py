"""``web_search`` and ``image_search`` through the platform's search provider."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Final

from puras_agent_runner.conversation import ToolSpec
from puras_agent_runner.search import SearchError
from puras_agent_runner.tools.base import ToolContext, ToolError, ToolOutput

DEFAULT_RESULTS: Final = 5
MAX_RESULTS: Final = 20


def _schema(what: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "description": what},
            "max_results": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_RESULTS,
                "description": f"Max results to return (1-{MAX_RESULTS}, default {DEFAULT_RESULTS})",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    }


WEB_SPEC = ToolSpec(
    "web_search",
    "Search the web via the platform's search provider. Returns a list of results with title, url, and a "
    "short snippet. To then load a result's full text, follow up with web_fetch.",
    _schema("Search query"),
)
IMAGE_SPEC = ToolSpec(
    "image_search",
    "Search for images on the web via the platform's search provider. Returns image URLs, thumbnails, "
    "dimensions, and source pages. To look at one, follow up with download_url + file_read.",
    _schema("Image search query"),
)


def _provider(ctx: ToolContext) -> Any:
    if ctx.search is None:
        raise ToolError(
            "web search is not configured on this platform (the operator sets PURAS_SEARCH_API_KEY)"
        )
    return ctx.search


class WebSearchTool:
    spec = WEB_SPEC

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        n = int(args.get("max_results", DEFAULT_RESULTS))
        try:
            results = await _provider(ctx).web(args["query"], max_results=n)
        except SearchError as exc:
            raise ToolError(str(exc)) from None
        rows = [asdict(r) for r in results[:n]]
        return ToolOutput.text(
            json.dumps(rows, ensure_ascii=False, indent=1), detail={"results": len(rows)}
        )


class ImageSearchTool:
    spec = IMAGE_SPEC

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        n = int(args.get("max_results", DEFAULT_RESULTS))
        try:
            results = await _provider(ctx).images(args["query"], max_results=n)
        except SearchError as exc:
            raise ToolError(str(exc)) from None
        rows = [asdict(r) for r in results[:n]]
        return ToolOutput.text(
            json.dumps(rows, ensure_ascii=False, indent=1), detail={"results": len(rows)}
        )
