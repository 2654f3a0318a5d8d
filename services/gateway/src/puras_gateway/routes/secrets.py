"""``/v1/secrets``: a skillpack's secrets (``?skillpack=``, default the key's). Names and times
are listed, values are only ever written: they reach nothing but the environment of the
skillpack's jobs. Members of a workspace see the names; only its owners set and delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from puras_gateway.auth import GatewayDep, PrincipalDep, require_owner
from puras_gateway.deployments_api import (
    call,
    relay,
    require_secret_key,
    segment,
    skillpack_ref,
    workspace_path,
)

router = APIRouter(prefix="/v1/secrets", tags=["secrets"])


class SecretValue(BaseModel):
    """``PUT /v1/secrets/{name}`` body."""

    model_config = ConfigDict(extra="forbid")
    value: str


@router.get("")
async def list_secrets(gw: GatewayDep, who: PrincipalDep, skillpack: str | None = None) -> Any:
    require_secret_key(who)
    params = {"skillpack": skillpack_ref(who, skillpack)}
    return relay(await call(gw, "GET", f"{workspace_path(who)}/secrets", params=params))


@router.put("/{name}")
async def put_secret(
    name: str, body: SecretValue, gw: GatewayDep, who: PrincipalDep, skillpack: str | None = None
) -> Any:
    """Create or overwrite a secret; the answer holds its name and times, never its value."""
    require_owner(who, "secrets")
    params = {"skillpack": skillpack_ref(who, skillpack)}
    return relay(
        await call(
            gw,
            "PUT",
            f"{workspace_path(who)}/secrets/{segment(name, what='name')}",
            params=params,
            json=body.model_dump(),
        )
    )


@router.delete("/{name}")
async def delete_secret(
    name: str, gw: GatewayDep, who: PrincipalDep, skillpack: str | None = None
) -> Any:
    require_owner(who, "secrets")
    params = {"skillpack": skillpack_ref(who, skillpack)}
    path = f"{workspace_path(who)}/secrets/{segment(name, what='name')}"
    return relay(await call(gw, "DELETE", path, params=params))
