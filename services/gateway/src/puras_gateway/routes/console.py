"""``/console``: the web console's pages (HTML shells whose scripts call the public API) and
its static assets. Not part of the API: left out of the OpenAPI document."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from puras_common.ids import parse_id

from puras_gateway import console
from puras_gateway.auth import GatewayDep

router = APIRouter(prefix="/console", include_in_schema=False)


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/console/login?next={quote(request.url.path)}", status_code=303)


@router.get("")
@router.get("/")
async def home(request: Request, gw: GatewayDep) -> Any:
    who = await console.viewer(request, gw)
    if who is None:
        return RedirectResponse("/console/login", status_code=303)
    if not who.workspaces:
        return console.render(request, gw, "empty.html", who=who, title="No workspace")
    return RedirectResponse(f"/console/{who.workspaces[0]['slug']}", status_code=303)


@router.get("/login")
async def login(request: Request, gw: GatewayDep) -> Any:
    return console.render(request, gw, "login.html", title="Sign in")


@router.get("/invite")
async def invite(request: Request, gw: GatewayDep) -> Any:
    return console.render(request, gw, "invite.html", title="Join a workspace")


async def _page(request: Request, gw: GatewayDep, workspace: str, page: str, **context: Any) -> Any:
    who = await console.viewer(request, gw)
    if who is None:
        return _to_login(request)
    current = who.workspace(workspace)
    if current is None or page not in console.PAGES:
        return console.render(
            request, gw, "missing.html", status_code=404, who=who, title="Not found"
        )
    template = "job.html" if "job_id" in context else f"{page}.html"
    return console.render(
        request,
        gw,
        template,
        who=who,
        workspace=current,
        page=page,
        title=console.PAGES[page],
        **context,
    )


@router.get("/{workspace}")
async def overview(workspace: str, request: Request, gw: GatewayDep) -> Any:
    return await _page(request, gw, workspace, "overview")


@router.get("/{workspace}/jobs/{job_id}")
async def job(workspace: str, job_id: str, request: Request, gw: GatewayDep) -> Any:
    parsed = parse_id(job_id)
    if parsed is None:  # the page's script builds API paths from it: only an id gets that far
        return await _page(request, gw, workspace, "no such page")
    return await _page(request, gw, workspace, "jobs", job_id=str(parsed))


@router.get("/{workspace}/{page}")
async def page(workspace: str, page: str, request: Request, gw: GatewayDep) -> Any:
    return await _page(request, gw, workspace, page)
