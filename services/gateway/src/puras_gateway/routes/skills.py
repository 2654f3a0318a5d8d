"""``/v1/skills``: the active skills of a skillpack, with their schemas (for playgrounds and SDKs).

A key with an allowlist sees only the skills it may run; this is the one catalogue read a
publishable key may make, so an app can render forms from the schemas and their ``x-puras``
hints.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from puras_common.api import ApiError, ErrorCode
from pydantic import BaseModel

from puras_gateway import catalog
from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.fences import may_run
from puras_gateway.openapi import ERRORS

router = APIRouter(prefix="/v1/skills", tags=["skills"], responses=ERRORS)


class SkillOut(BaseModel):
    name: str
    skillpack: str
    description: str
    kind: str
    model: str | None
    input_schema: dict[str, Any] | bool | None
    output_schema: dict[str, Any] | bool | None
    timeout_seconds: int | None
    version: int
    deployment_id: str


class SkillList(BaseModel):
    data: list[SkillOut]


@router.get("", response_model=SkillList)
async def list_skills(
    gw: GatewayDep,
    who: PrincipalDep,
    skillpack: Annotated[
        str | None, Query(description="Slug or UUID; default the key's skillpack")
    ] = None,
) -> SkillList:
    ref = skillpack or who.skillpack
    found = await catalog.active_skills(gw.db, who.workspace_id, ref)
    if found is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"skillpack {ref!r} not found")
    pack, rows = found
    return SkillList(
        data=[
            SkillOut(
                name=r["name"],
                skillpack=pack["slug"],
                description=r["description"],
                kind=r["kind"],
                model=r["model"],
                input_schema=r["input_schema"],
                output_schema=r["output_schema"],
                timeout_seconds=r["timeout_seconds"],
                version=r["version"],
                deployment_id=str(r["deployment_id"]),
            )
            for r in rows
            if may_run(
                who.allowed_skills,
                workspace=who.workspace_slug,
                skillpack=pack["slug"],
                skill=r["name"],
            )
        ]
    )
