"""The deployments service's internal listener as the gateway calls it on a tenant's behalf:
deployments, skillpacks and secrets are owned there; the gateway authenticates the key, picks
the skillpack and waits for its own catalogue to catch up where a client would notice."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final
from uuid import UUID

import httpx
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode

from puras_gateway import catalog
from puras_gateway.context import Gateway
from puras_gateway.keys import Principal
from puras_gateway.notify import CATALOG_CHANNEL


def require_secret_key(who: Principal) -> None:
    """Managing deployments, skillpacks and secrets takes a secret key or a person signed in,
    never a publishable key."""
    if who.kind == "publishable":
        raise ApiError(
            ErrorCode.FORBIDDEN,
            "publishable keys can submit and read jobs only; use a secret key (puras_live_…) to manage "
            "deployments, skillpacks and secrets",
        )


SEGMENT: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
"""What a client's value may be to become one segment of an internal URL: the names and ids it
stands for (slugs, UUIDs, secret names) and nothing else, so no separator, dot segment, escape
or control character a client shaped ever reaches the internal API."""


def segment(value: str, *, what: str) -> str:
    """``value`` for one segment of an internal path; 400 naming ``what`` otherwise."""
    if SEGMENT.match(value) is None:
        shown = value if len(value) <= 100 else value[:100] + "…"
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"{what} {shown!r} is not a valid name: letters, digits, '_' and '-', 1 to 128 of them",
            details=[{"pointer": f"/{what}", "message": "letters, digits, '_' and '-' only"}],
        )
    return value


def skillpack_ref(who: Principal, value: str | None) -> str:
    """The skillpack a request names (slug, id or ``workspace/skillpack``), default the key's.

    Only the caller's own workspace may be named: another workspace's skillpack answers 404,
    so its existence is not revealed.
    """
    if value is None or value == "":
        return who.skillpack
    workspace, slash, pack = value.rpartition("/")
    if not slash:
        return value
    if workspace not in (who.workspace_slug, str(who.workspace_id)) or not pack:
        raise ApiError(ErrorCode.NOT_FOUND, f"skillpack {value!r} not found")
    return pack


def skillpack_segment(who: Principal, value: str) -> str:
    """:func:`skillpack_ref` for a path of the internal API: a name no skillpack can have
    answers 404 here, before it reaches a URL."""
    pack = skillpack_ref(who, value)
    if SEGMENT.match(pack) is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"skillpack {value[:200]!r} not found")
    return pack


def workspace_path(who: Principal) -> str:
    return f"/internal/workspaces/{who.workspace_id}"


async def call(
    gw: Gateway,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    json: Any = None,
    content: Any = None,
    headers: dict[str, str] | None = None,
    timeout: httpx.Timeout | float = 30.0,
) -> httpx.Response:
    """One request to the deployments service; 503 when it cannot be reached."""
    try:
        return await gw.http.request(
            method,
            f"{gw.settings.deployments_url}{path}",
            params=params,
            json=json,
            content=content,
            headers={**gw.internal_headers, **(headers or {})},
            timeout=timeout,
        )
    except httpx.TransportError as exc:
        raise ApiError(
            ErrorCode.UNAVAILABLE, f"deployments service unreachable: {type(exc).__name__}"
        ) from None


def relay(response: httpx.Response, *, status_code: int | None = None) -> JSONResponse:
    """The owner's answer as the client's (errors already follow the public error contract)."""
    return JSONResponse(response.json(), status_code=status_code or response.status_code)


async def wait_catalogue(
    gw: Gateway, key: UUID, probe: Callable[[Any], Awaitable[Any]], *, timeout: float
) -> Any:
    """Wait until ``probe(conn)`` on the gateway's catalogue returns something (None at timeout);
    woken by the catalogue's NOTIFY for ``key`` (a deployment or skillpack id)."""

    async def look() -> Any:
        async with gw.db.acquire() as conn:
            return await probe(conn)

    return await gw.notifier.wait_until(CATALOG_CHANNEL, str(key), look, timeout=timeout)


def not_yet_visible(what: str) -> ApiError:
    return ApiError(
        ErrorCode.UNAVAILABLE,
        f"{what} was stored but is not yet visible to the gateway; retry shortly",
    )


async def settle(
    gw: Gateway, who: Principal, deployment_id: UUID, body: dict[str, Any], *, wait_build: bool
) -> dict[str, Any]:
    """A pushed deployment as the client should see it: once built (within
    ``build_wait_seconds``, unless not ``wait_build``; a failed build is the push's 400) and,
    when ready, runnable here."""
    if body["status"] == "building" and wait_build:
        body = await _wait_built(gw, who, deployment_id, body)
    if body["status"] == "ready":
        await wait_runnable(gw, deployment_id, active=body["active"])
    return body


async def _wait_built(
    gw: Gateway, who: Principal, deployment_id: UUID, body: dict[str, Any]
) -> dict[str, Any]:
    """Wait up to ``build_wait_seconds`` for the build; a failure becomes the push's 400."""

    async def settled(conn: Any) -> str | None:
        status = await catalog.deployment_status(conn, deployment_id)
        return status if status in ("ready", "failed") else None

    status = await wait_catalogue(
        gw, deployment_id, settled, timeout=gw.settings.build_wait_seconds
    )
    if status is None:
        return body
    latest: dict[str, Any] = (
        await call(gw, "GET", f"{workspace_path(who)}/deployments/{deployment_id}")
    ).json()
    if status == "failed":
        raise ApiError(
            ErrorCode.INVALID_BUNDLE,
            f"requirements.txt: {latest.get('error') or 'the build failed'}",
            details=[
                {
                    "file": "requirements.txt",
                    "field": None,
                    "message": latest.get("error"),
                    "deployment_id": str(deployment_id),
                    "build_log": latest.get("build_log", ""),
                }
            ],
        )
    return latest


async def wait_runnable(gw: Gateway, deployment_id: UUID, *, active: bool) -> None:
    """Block until the catalogue has the ready deployment (and, if ``active``, points at it)."""

    async def visible(conn: Any) -> bool | None:
        return (
            True if await catalog.deployment_visible(conn, deployment_id, active=active) else None
        )

    if not await wait_catalogue(
        gw, deployment_id, visible, timeout=gw.settings.deployment_visible_timeout
    ):
        raise not_yet_visible(f"deployment {deployment_id}")


async def wait_deleted(gw: Gateway, deployment_id: UUID) -> None:
    """Block until the catalogue no longer runs the deleted deployment."""

    async def gone(conn: Any) -> bool | None:
        return True if await catalog.deployment_deleted(conn, deployment_id) else None

    if not await wait_catalogue(
        gw, deployment_id, gone, timeout=gw.settings.deployment_visible_timeout
    ):
        raise not_yet_visible(f"the deletion of deployment {deployment_id}")


async def wait_visibility(gw: Gateway, skillpack_id: UUID, revision: int, *, shown: str) -> None:
    """Block until the catalogue resolves the skillpack with ``revision`` or a later one."""

    async def applied(conn: Any) -> bool | None:
        seen = await catalog.skillpack_revision(conn, skillpack_id)
        return True if seen is not None and seen >= revision else None

    if not await wait_catalogue(
        gw, skillpack_id, applied, timeout=gw.settings.deployment_visible_timeout
    ):
        raise not_yet_visible(f"the visibility of skillpack {shown!r}")
