"""How the platform serves files a tenant stored: inert, whatever they hold.

A drive file is whatever a tenant or a job wrote, served from the API's own origin (unless the
drive's links have an origin of their own). An HTML page or an SVG shown inline there would run
its script with the origin's cookies and storage, so only a short list of types that a browser
renders without running anything is ever shown inline; everything else is a download. Every
drive response also carries ``nosniff`` (a browser may not guess a more dangerous type) and a
sandboxing CSP (a document that is rendered anyway gets a unique origin and no script).

The drive sets these headers where it serves a file, and the gateway enforces them again on
every drive response it relays, so neither alone decides what a browser runs.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Final
from urllib.parse import quote

SANDBOX_CSP: Final = "sandbox; default-src 'none'"
"""A sandbox with no permissions: no script, no forms, no same-origin access; and no fetches."""

INERT_HEADERS: Final[Mapping[str, str]] = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": SANDBOX_CSP,
}
"""On every response of the drive's routes, files and JSON alike."""

INLINE_IMAGE_TYPES: Final = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/tiff",
        "image/heic",
        "image/heif",
        "image/x-icon",
        "image/vnd.microsoft.icon",
    }
)
"""Raster images only: ``image/svg+xml`` is a document that runs script."""

INLINE_TYPES: Final = INLINE_IMAGE_TYPES | {"application/pdf", "text/plain"}


def media_type(content_type: str | None) -> str:
    """``text/plain`` from ``Text/Plain; charset=utf-8``; ``""`` for none."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def shown_inline(content_type: str | None) -> bool:
    """Whether a browser may render this type in place: raster images, audio, video, PDF and
    plain text. Anything else (HTML, SVG, XML, JavaScript, unknown types) is a download."""
    kind = media_type(content_type)
    return kind in INLINE_TYPES or kind.startswith(("audio/", "video/"))


def content_disposition(name: str, *, inline: bool) -> str:
    """``inline`` or ``attachment`` with the file's name, ASCII and RFC 5987 forms."""
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    disposition = "inline" if inline else "attachment"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def file_headers(name: str, content_type: str | None) -> dict[str, str]:
    """The headers of a served file named ``name``: its disposition and the inert headers."""
    return {
        "Content-Disposition": content_disposition(name, inline=shown_inline(content_type)),
        **INERT_HEADERS,
    }


def enforce(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` of a drive response made inert: the inert headers set, and a disposition
    turned into ``attachment`` (one is added if missing) unless the content type is on the
    inline list. Keys come back as given, the ones added in their canonical case."""
    out = {k: v for k, v in headers.items() if k.lower() not in _ENFORCED}
    out.update(INERT_HEADERS)
    lowered = {k.lower(): v for k, v in headers.items()}
    disposition = lowered.get("content-disposition")
    if not shown_inline(lowered.get("content-type")):
        if disposition is None:
            disposition = "attachment"
        else:
            _, _, rest = disposition.partition(";")
            disposition = f"attachment;{rest}" if rest else "attachment"
    if disposition is not None:
        out["Content-Disposition"] = disposition
    return out


_ENFORCED: Final = frozenset(
    {"x-content-type-options", "content-security-policy", "content-disposition"}
)


class InertResponses:
    """ASGI middleware: :data:`INERT_HEADERS` on every response whose path starts with
    ``prefix``, errors included, whatever route or handler answered."""

    def __init__(self, app: Any, *, prefix: str = "/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefix):
            await self.app(scope, receive, send)
            return

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in _INERT_NAMES
                ]
                message["headers"] = kept + _INERT_RAW
            await send(message)

        await self.app(scope, receive, sending)


_INERT_NAMES: Final = frozenset(k.lower().encode() for k in INERT_HEADERS)
_INERT_RAW: Final = [(k.lower().encode(), v.encode()) for k, v in INERT_HEADERS.items()]
