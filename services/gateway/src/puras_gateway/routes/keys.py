"""``/v1/keys``: mint, list and revoke the workspace's API keys.

A key is shown once, when it is minted; afterwards only its prefix. Revocation takes effect on
the key's next request (every request reads the key's row).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from puras_common.api import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, ApiError, ErrorCode, Page
from puras_common.ids import parse_id
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from puras_gateway import keys
from puras_gateway.auth import GatewayDep, PrincipalDep, require_owner
from puras_gateway.bodies import check_limit, parse_model, read_capped
from puras_gateway.context import Gateway
from puras_gateway.keys import Principal

router = APIRouter(prefix="/v1/keys", tags=["keys"])

SKILLPACK: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SKILL_REF: Final = re.compile(
    r"^(?:(?:[a-z0-9][a-z0-9-]{0,62}/)?[a-z0-9][a-z0-9_-]{0,62}/)?[a-z0-9][a-z0-9_-]{0,99}$"
)
MAX_DAILY_CAP_MICROS: Final = 10**15
"""A billion dollars a day: larger caps are almost certainly a units mistake."""


class KeyCreate(BaseModel):
    """``POST /v1/keys`` body."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["secret", "publishable"] = "secret"
    name: str = Field(default="", max_length=200)
    skillpack: str = Field(
        default="default", max_length=100, description="Default skillpack: a slug or UUID"
    )
    allowed_skills: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Skills the key may run: 'skill', 'skillpack/skill' or 'workspace/skillpack/skill'",
    )
    daily_cap_micros: StrictInt | None = Field(default=None, ge=1, le=MAX_DAILY_CAP_MICROS)

    @field_validator("skillpack")
    @classmethod
    def _skillpack(cls, value: str) -> str:
        if not SKILLPACK.match(value) and parse_id(value) is None:
            raise ValueError(
                "must be a skillpack slug (^[a-z0-9][a-z0-9_-]{0,62}$) or a skillpack UUID"
            )
        return value

    @field_validator("allowed_skills")
    @classmethod
    def _skills(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for index, entry in enumerate(value):
            if not isinstance(entry, str) or not SKILL_REF.match(entry):
                raise ValueError(
                    f"entry {index} ({entry!r}) is not a skill address: 'skill', 'skillpack/skill' or 'workspace/skillpack/skill'"
                )
        return list(dict.fromkeys(value))


class KeyOut(BaseModel):
    """A key as listed: never its secret."""

    id: UUID
    kind: keys.KeyKind
    name: str
    prefix: str
    """``puras_live_AbCd1234`` / ``puras_pub_AbCd1234``: enough to recognise the key."""
    skillpack: str
    allowed_skills: list[str] | None
    daily_cap_micros: int | None
    spent_today_micros: int
    """Spent with this key since midnight UTC (what ``daily_cap_micros`` is checked against)."""
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class MintedKeyOut(KeyOut):
    api_key: str
    """The whole key. Shown this once; only its prefix is kept."""


def key_out(row: asyncpg.Record) -> KeyOut:
    return KeyOut(**{**dict(row), "prefix": keys.KIND_PREFIX[row["kind"]] + row["prefix"]})


@router.post("", status_code=201, response_model=MintedKeyOut)
async def create_key(request: Request, gw: GatewayDep, who: PrincipalDep) -> Any:
    require_owner(who, "API keys")
    body = parse_model(KeyCreate, await read_capped(request, 64 * 1024))
    if wider := keys.wider_rights(
        who,
        kind=body.kind,
        allowed_skills=body.allowed_skills,
        daily_cap_micros=body.daily_cap_micros,
    ):
        raise ApiError(
            ErrorCode.FORBIDDEN,
            "a key may only mint keys with equal or narrower rights: "
            + "; ".join(f"{d.pointer} {d.message}" for d in wider),
            details=wider,
        )
    row, minted = await keys.create(
        gw.outbox,
        workspace_id=who.workspace_id,
        kind=body.kind,
        name=body.name,
        skillpack=body.skillpack,
        allowed_skills=body.allowed_skills,
        daily_cap_micros=body.daily_cap_micros,
    )
    out = MintedKeyOut(**key_out(row).model_dump(), api_key=minted.token)
    return JSONResponse(
        out.model_dump(mode="json"), status_code=201, headers={"Location": f"/v1/keys/{out.id}"}
    )


@router.get("", response_model=Page[KeyOut])
async def list_keys(
    gw: GatewayDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(description=f"1–{MAX_PAGE_LIMIT}")] = DEFAULT_PAGE_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Page[KeyOut]:
    check_limit(limit)
    after = None
    if cursor is not None and (after := parse_id(cursor)) is None:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"cursor {cursor!r} is not one this API returned",
            details=[{"pointer": "?cursor", "message": "unknown cursor"}],
        )
    rows = await keys.page(gw.db, who.workspace_id, after=after, limit=limit + 1)
    page = [key_out(r) for r in rows[:limit]]
    return Page[KeyOut](data=page, next_cursor=str(page[-1].id) if len(rows) > limit else None)


@router.delete("/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: str, gw: GatewayDep, who: PrincipalDep) -> KeyOut:
    require_owner(who, "API keys")
    await _may_revoke(gw, who, key_id)
    row = await keys.revoke(
        gw.outbox, workspace_id=who.workspace_id, key_id=parse_id(key_id), shown=key_id
    )
    return key_out(row)


async def _may_revoke(gw: Gateway, who: Principal, key_id: str) -> None:
    """A key with an allowlist or a cap revokes only keys it could have minted: it cannot take
    a wider key away from the app that holds it. (Another workspace's key is 404 in revoke.)"""
    if who.kind == "user" or (who.allowed_skills is None and who.daily_cap_micros is None):
        return
    target = await keys.by_id(gw.db, parsed) if (parsed := parse_id(key_id)) else None
    if target is None or target["workspace_id"] != who.workspace_id:
        return
    allowed = target["allowed_skills"]
    if keys.wider_rights(
        who,
        kind=target["kind"],
        allowed_skills=list(allowed) if allowed is not None else None,
        daily_cap_micros=target["daily_cap_micros"],
    ):
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"key {key_id} has wider rights than this key; a key revokes only keys it could mint",
        )
