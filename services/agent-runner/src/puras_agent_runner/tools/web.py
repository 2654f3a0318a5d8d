"""``web_fetch``: a page's title and readable text, without running its JavaScript."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any, Final

from puras_agent_runner.conversation import ToolSpec
from puras_agent_runner.fetching import FetchError
from puras_agent_runner.tools.base import ToolContext, ToolError, ToolOutput

DEFAULT_MAX_CHARS: Final = 20_000
MIN_MAX_CHARS: Final = 500
MAX_MAX_CHARS: Final = 200_000
MAX_PAGE_BYTES: Final = 10 * 1024 * 1024
"""Pages larger than this are refused rather than read into memory."""

SPEC = ToolSpec(
    name="web_fetch",
    description=(
        "Fetch a web page (HTTP GET) and return its plain text content with scripts/styles stripped. "
        "Does NOT execute JavaScript: for SPAs that render client-side this will be mostly empty. Returns "
        "the final URL (after redirects), page title, and extracted text (truncated to max_chars)."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "The URL to fetch (http:// or https://)"},
            "max_chars": {
                "type": "integer",
                "minimum": MIN_MAX_CHARS,
                "maximum": MAX_MAX_CHARS,
                "description": f"Max chars of body text to return ({MIN_MAX_CHARS}-{MAX_MAX_CHARS}, default {DEFAULT_MAX_CHARS})",
            },
        },
        "required": ["url"],
        "additionalProperties": False,
    },
)

_SKIP: Final = frozenset({"script", "style", "noscript", "template", "svg", "head"})
_BLOCK: Final = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "tr",
        "table",
        "section",
        "article",
        "header",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "blockquote",
        "hr",
        "main",
        "nav",
        "aside",
        "form",
        "dd",
        "dt",
        "figcaption",
    }
)
_TEXT_TYPES: Final = (
    "text/",
    "application/json",
    "application/xml",
    "application/xhtml+xml",
    "application/yaml",
)


class _Extractor(HTMLParser):
    """Title and visible text of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.parts: list[str] = []
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP:
            self._skipping += 1
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skipping:
            self.parts.append(data)

    def text(self) -> str:
        joined = "".join(self.parts)
        lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in joined.split("\n"))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def extract(html: str) -> tuple[str, str]:
    """``(title, text)`` of an HTML page."""
    parser = _Extractor()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.title).split()), parser.text()


class WebFetchTool:
    spec = SPEC

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        max_chars = int(args.get("max_chars", DEFAULT_MAX_CHARS))
        try:
            page = await ctx.fetcher.get(args["url"], max_bytes=MAX_PAGE_BYTES)
        except FetchError as exc:
            raise ToolError(str(exc)) from None
        if not page.content_type.startswith(_TEXT_TYPES):
            raise ToolError(
                f"{page.url} is {page.content_type}, not a web page; use download_url to save it to the drive"
            )
        decoded = page.body.decode(page.charset or "utf-8", errors="replace")
        if "html" in page.content_type:
            title, text = extract(decoded)
        else:
            title, text = "", decoded.strip()
        total = len(text)
        text = text[:max_chars]
        note = (
            f"\n[truncated: showing {max_chars} of {total} characters]" if total > max_chars else ""
        )
        head = f"URL: {page.url}\nTitle: {title}\n\n"
        detail = {"url": page.url, "title": title, "chars": total, "truncated": total > max_chars}
        return ToolOutput.text(head + text + note, detail=detail)
