"""The deployments service's internal listener as the gateway calls it on a tenant's behalf:
deployments, skillpacks and secrets are owned there; the gateway authenticates the key, picks
the skillpack and waits for its own catalogue to catch up where a client would notice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import httpx
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode

from puras_gateway.auth import Principal
from puras_gateway.context import Gateway
from puras_gateway.notify import CATALOG_CHANNEL


def require_secret_key(who: Principal) -> None:
    """Managing deployments, skillpacks and secrets takes a secret key, never a publishable one."""
    if who.kind != "secret":
        raise ApiError(
            ErrorCode.FORBIDDEN,
            "publishable keys can submit and read jobs only; use a secret key (puras_live_…) to manage "
            "deployments, skillpacks and secrets",
        )


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
        raise ApiError(ErrorCode.UNAVAILABLE, f"deployments service unreachable: {type(exc).__name__}") from None


def relay(response: httpx.Response, *, status_code: int | None = None) -> JSONResponse:
    """The owner's answer as the client's (errors already follow the public error contract)."""
    return JSONResponse(response.json(), status_code=status_code or response.status_code)


async def wait_catalogue(gw: Gateway, key: UUID, probe: Callable[[Any], Awaitable[Any]], *, timeout: float) -> Any:
    """Wait until ``probe(conn)`` on the gateway's catalogue returns something (None at timeout);
    woken by the catalogue's NOTIFY for ``key`` (a deployment or skillpack id)."""

    async def look() -> Any:
        async with gw.db.acquire() as conn:
            return await probe(conn)

    return await gw.notifier.wait_until(CATALOG_CHANNEL, str(key), look, timeout=timeout)


def not_yet_visible(what: str) -> ApiError:
    return ApiError(ErrorCode.UNAVAILABLE, f"{what} was stored but is not yet visible to the gateway; retry shortly")
