"""The console's pages: who is looking at them, and the HTML shell each page is.

A page is a template that knows only who is signed in, the workspace in its URL and the CSRF
token; everything it shows is fetched by its script from the public API, with the same routes,
rules and errors as any other client. The page routes also renew the session's cookie once its
token has lived half its time, so a console left open stays signed in until the session ends.

Pages are served with a strict Content Security Policy: scripts, styles and everything else
only from this gateway, no inline script, and no framing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from puras_common.api import ApiError

from puras_gateway import people, sessions
from puras_gateway.context import Gateway

ASSETS: Final = Path(str(files("puras_gateway") / "console_assets"))
TEMPLATES: Final = ASSETS / "templates"
STATIC: Final = ASSETS / "static"

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

PAGES: Final = {
    "overview": "Overview",
    "deployments": "Deployments",
    "jobs": "Jobs",
    "playground": "Playground",
    "usage": "Usage",
    "keys": "API keys",
    "secrets": "Secrets",
    "drive": "Drive",
    "members": "Members",
}
"""Every page of a workspace, in the navigation's order, with its title."""

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Viewer:
    """Someone signed in, looking at the console."""

    user_id: str
    email: str
    csrf: str
    workspaces: list[dict[str, Any]]
    renew: sessions.Issued | None
    """A fresh token to set, when the one presented is past half its life."""

    def workspace(self, ref: str) -> dict[str, Any] | None:
        return next((w for w in self.workspaces if ref in (w["slug"], w["id"])), None)


async def viewer(request: Request, gw: Gateway) -> Viewer | None:
    """Who is signed in by the request's cookie (None: nobody, or a session that ended)."""
    token = sessions.from_cookie(request)
    if not token:
        return None
    key = gw.settings.session_key.get_secret_value()
    try:
        claims = sessions.verify(key, token)
        row = await sessions.live(gw.db, claims)
    except ApiError:
        return None
    workspaces = [
        {"id": str(w["id"]), "slug": w["slug"], "name": w["name"], "role": w["role"]}
        for w in await people.workspaces_of(gw.db, claims.user_id)
    ]
    renew = None
    if claims.expires_at - time.time() < gw.settings.session_token_seconds / 2:
        renew = sessions.issue(
            key,
            user_id=claims.user_id,
            session_id=claims.session_id,
            csrf=claims.csrf,
            ttl=gw.settings.session_token_seconds,
            ends=row["expires_at"],
        )
    return Viewer(str(claims.user_id), row["email"], claims.csrf, workspaces, renew)


def render(
    request: Request,
    gw: Gateway,
    template: str,
    *,
    status_code: int = 200,
    who: Viewer | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page, with the console's security headers (and a renewed cookie, when due)."""
    html = _env.get_template(template).render(
        viewer=who, pages=PAGES, api_base=gw.settings.base_url, **context
    )
    response = HTMLResponse(html, status_code=status_code, headers=HEADERS)
    if who is not None and who.renew is not None:
        sessions.set_cookie(
            response, request, who.renew, secure=gw.settings.base_url.startswith("https://")
        )
    return response
