"""``/v1/skillpacks``: a workspace's skillpacks, and their visibility (private or public: a
public skillpack's skills can be run from any workspace as ``workspace/skillpack/skill``)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from puras_gateway import deployments_api
from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.deployments_api import (
    call,
    relay,
    require_secret_key,
    skillpack_segment,
    workspace_path,
)

router = APIRouter(prefix="/v1/skillpacks", tags=["skillpacks"])


class SkillpackUpdate(BaseModel):
    """``PATCH /v1/skillpacks/{skillpack}`` body."""

    model_config = ConfigDict(extra="forbid")
    visibility: Literal["private", "public"]


@router.get("")
async def list_skillpacks(gw: GatewayDep, who: PrincipalDep) -> Any:
    require_secret_key(who)
    return relay(await call(gw, "GET", f"{workspace_path(who)}/skillpacks"))


@router.get("/{skillpack:path}")
async def get_skillpack(skillpack: str, gw: GatewayDep, who: PrincipalDep) -> Any:
    require_secret_key(who)
    return relay(
        await call(
            gw, "GET", f"{workspace_path(who)}/skillpacks/{skillpack_segment(who, skillpack)}"
        )
    )


@router.patch("/{skillpack:path}")
async def update_skillpack(
    skillpack: str, body: SkillpackUpdate, gw: GatewayDep, who: PrincipalDep
) -> Any:
    """Make a skillpack private or public; returns once jobs are resolved with the new setting."""
    require_secret_key(who)
    response = await call(
        gw,
        "PATCH",
        f"{workspace_path(who)}/skillpacks/{skillpack_segment(who, skillpack)}",
        json=body.model_dump(),
    )
    if response.status_code == 200 and (revision := response.json()["revision"]) > 0:
        await deployments_api.wait_visibility(
            gw, UUID(response.json()["id"]), revision, shown=skillpack
        )
    return relay(response)
