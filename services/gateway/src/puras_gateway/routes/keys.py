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
from puras_common.events import KeyCreated, KeyRevoked
from puras_common.events.platform import KeyCreatedPayload, KeyRevokedPayload
from puras_common.ids import parse_id
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from puras_gateway import keys, workspaces
from puras_gateway.auth import GatewayDep, PrincipalDep
from puras_gateway.bodies import parse_model, read_capped

router = APIRouter(prefix="/v1/keys", tags=["keys"])

SKILLPACK: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SKILL_REF: Final = re.compile(r"^(?:(?:[a-z0-9][a-z0-9-]{0,62}/)?[a-z0-9][a-z0-9_-]{0,62}/)?[a-z0-9][a-z0-9_-]{0,99}$")
MAX_DAILY_CAP_MICROS: Final = 10**15
"""A billion dollars a day: larger caps are almost certainly a units mistake."""


class KeyCreate(BaseModel):
    """``POST /v1/keys`` body."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["secret", "publishable"] = "secret"
    name: str = Field(default="", max_length=200)
    skillpack: str = Field(default="default", max_length=100, description="Default skillpack: a slug or UUID")
    allowed_skills: list[str] | None = Field(
        default=None, min_length=1, max_length=100,
        description="Skills the key may run: 'skill', 'skillpack/skill' or 'workspace/skillpack/skill'",
    )
    daily_cap_micros: StrictInt | None = Field(default=None, ge=1, le=MAX_DAILY_CAP_MICROS)

    @field_validator("skillpack")
    @classmethod
    def _skillpack(cls, value: str) -> str:
        if not SKILLPACK.match(value) and parse_id(value) is None:
            raise ValueError("must be a skillpack slug (^[a-z0-9][a-z0-9_-]{0,62}$) or a skillpack UUID")
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


_COLUMNS = """id, kind, name, prefix, skillpack, allowed_skills, daily_cap_micros, created_at, last_used_at, revoked_at,
coalesce((SELECT spent_micros FROM key_spend s
          WHERE s.key_id = api_keys.id AND s.day = (now() AT TIME ZONE 'UTC')::date), 0) AS spent_today_micros"""


def key_out(row: asyncpg.Record) -> KeyOut:
    return KeyOut(**{**dict(row), "prefix": keys.KIND_PREFIX[row["kind"]] + row["prefix"]})


@router.post("", status_code=201, response_model=MintedKeyOut)
async def create_key(request: Request, gw: GatewayDep, who: PrincipalDep) -> Any:
    body = parse_model(KeyCreate, await read_capped(request, 64 * 1024))
    async with gw.outbox.transaction() as uow:
        key_id, minted = await workspaces.insert_key(
            uow.conn, workspace_id=who.workspace_id, kind=body.kind, name=body.name, skillpack=body.skillpack,
            allowed_skills=body.allowed_skills, daily_cap_micros=body.daily_cap_micros,
        )
        row = await uow.conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)
        uow.emit(
            KeyCreated.new(
                KeyCreatedPayload(
                    key_id=key_id, kind=body.kind, prefix=minted.prefix, name=body.name, skillpack=body.skillpack,
                    allowed_skills=tuple(body.allowed_skills) if body.allowed_skills is not None else None,
                    daily_cap_micros=body.daily_cap_micros,
                ),
                producer="gateway",
                workspace_id=who.workspace_id,
            )
        )
    out = MintedKeyOut(**key_out(row).model_dump(), api_key=minted.token)
    return JSONResponse(out.model_dump(mode="json"), status_code=201, headers={"Location": f"/v1/keys/{key_id}"})


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
            ErrorCode.INVALID_REQUEST, f"cursor {cursor!r} is not one this API returned",
            details=[{"pointer": "?cursor", "message": "unknown cursor"}],
        )
    rows = await gw.db.fetch(
        f"""SELECT {_COLUMNS} FROM api_keys WHERE workspace_id = $1 AND ($2::uuid IS NULL OR id < $2)
            ORDER BY id DESC LIMIT $3""",
        who.workspace_id, after, limit + 1,
    )
    page = [key_out(r) for r in rows[:limit]]
    return Page[KeyOut](data=page, next_cursor=str(page[-1].id) if len(rows) > limit else None)


@router.delete("/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: str, gw: GatewayDep, who: PrincipalDep) -> KeyOut:
    parsed = parse_id(key_id)
    async with gw.outbox.transaction() as uow:
        # Lock the workspace's keys so two revocations cannot leave it with no secret key.
        rows = await uow.conn.fetch(
            "SELECT id, kind, prefix, revoked_at FROM api_keys WHERE workspace_id = $1 ORDER BY id FOR UPDATE",
            who.workspace_id,
        )
        target = next((r for r in rows if r["id"] == parsed), None)
        if target is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"key {key_id} not found")
        if target["revoked_at"] is None:
            live_secret = [r for r in rows if r["kind"] == "secret" and r["revoked_at"] is None]
            if target["kind"] == "secret" and len(live_secret) == 1:
                raise ApiError(
                    ErrorCode.CONFLICT,
                    f"key {key_id} is the workspace's last active secret key; mint another before revoking it",
                )
            await uow.conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", parsed)
            uow.emit(
                KeyRevoked.new(
                    KeyRevokedPayload(key_id=parsed, prefix=target["prefix"]),  # type: ignore[arg-type]
                    producer="gateway",
                    workspace_id=who.workspace_id,
                )
            )
        row = await uow.conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", parsed)
    return key_out(row)


def check_limit(limit: int) -> None:
    """``?limit=`` is 1–200 (§7 lists)."""
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"limit={limit} is out of range: pass 1 to {MAX_PAGE_LIMIT}",
            details=[{"pointer": "?limit", "message": f"must be in 1..{MAX_PAGE_LIMIT}"}],
        )
