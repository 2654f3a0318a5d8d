"""``/v1/skills``: the active skills of a skillpack, with their schemas (for playgrounds and SDKs)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from puras_common.api import ApiError, ErrorCode
from puras_common.ids import parse_id
from pydantic import BaseModel

from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.routes.jobs import ERRORS

router = APIRouter(prefix="/v1/skills", tags=["skills"], responses=ERRORS)


class SkillOut(BaseModel):
    name: str
    skillpack: str
    description: str
    kind: str
    model: str | None
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    timeout_seconds: int | None
    version: int
    deployment_id: str


class SkillList(BaseModel):
    data: list[SkillOut]


@router.get("", response_model=SkillList)
async def list_skills(
    gw: GatewayDep,
    who: PrincipalDep,
    skillpack: Annotated[str | None, Query(description="Slug or UUID; default the key's skillpack")] = None,
) -> SkillList:
    ref = skillpack or who.skillpack
    pack = await gw.db.fetchrow(
        """SELECT id, slug, active_deployment_id FROM skillpacks
           WHERE workspace_id = $1 AND (slug = $2 OR id = $3)""",
        who.workspace_id, ref, parse_id(ref),
    )
    if pack is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"skillpack {ref!r} not found")
    rows = await gw.db.fetch(
        """SELECT s.*, d.version FROM skills s JOIN deployments d ON d.id = s.deployment_id
           WHERE s.deployment_id = $1 ORDER BY s.name""",
        pack["active_deployment_id"],
    )
    return SkillList(
        data=[
            SkillOut(
                name=r["name"], skillpack=pack["slug"], description=r["description"], kind=r["kind"],
                model=r["model"], input_schema=r["input_schema"], output_schema=r["output_schema"],
                timeout_seconds=r["timeout_seconds"], version=r["version"], deployment_id=str(r["deployment_id"]),
            )
            for r in rows
        ]
    )
