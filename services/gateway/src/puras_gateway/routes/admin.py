"""``/v1/admin``: the operator's endpoints, behind ``PURAS_ADMIN_TOKEN``."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode
from puras_common.money import MoneyError, usd_to_micros
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway import passwords, people, workspaces
from puras_gateway.auth import AdminDep, GatewayDep
from puras_gateway.bodies import parse_model, read_capped

router = APIRouter(prefix="/v1/admin", tags=["admin"])

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"


class CreateWorkspace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=SLUG)
    name: str | None = Field(default=None, max_length=200)
    credit_usd: str | None = Field(
        default=None, description="Opening credit, a decimal string of USD"
    )


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    usd: str = Field(description='A decimal string of USD, e.g. "5" or "0.25"')
    note: str = Field(default="", max_length=500)


class CreateUser(BaseModel):
    """``POST /v1/admin/workspaces/{slug}/users`` body."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=people.MAX_EMAIL)
    role: Literal["owner", "member"] = "owner"
    password: str | None = Field(
        default=None,
        max_length=passwords.MAX_LENGTH,
        description="Omitted: one is generated and returned once",
    )
    reset_password: bool = Field(
        default=False, description="Replace an existing user's password (their sessions end)"
    )


def _micros(usd: str | None, pointer: str) -> int:
    if usd is None:
        return 0
    try:
        micros = usd_to_micros(usd)
    except MoneyError as exc:
        raise ApiError(
            ErrorCode.INVALID_REQUEST, str(exc), details=[{"pointer": pointer, "message": str(exc)}]
        ) from None
    if micros < 0:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "credit must not be negative",
            details=[{"pointer": pointer, "message": "negative"}],
        )
    return micros


@router.post("/workspaces", status_code=201)
async def create_workspace(request: Request, gw: GatewayDep, _admin: AdminDep) -> Any:
    body = parse_model(CreateWorkspace, await read_capped(request, 64 * 1024))
    credit = _micros(body.credit_usd, "/credit_usd")
    created = await workspaces.create_workspace(
        gw.outbox, slug=body.slug, name=body.name or body.slug, credit_micros=credit
    )
    return JSONResponse(
        {
            "workspace": {"id": str(created.id), "slug": created.slug, "name": created.name},
            "key": {"id": str(created.key_id), "prefix": created.key_prefix, "kind": "secret"},
            "api_key": created.api_key,
            "credit_micros": credit,
        },
        status_code=201,
    )


@router.post("/workspaces/{slug}/grants", status_code=202)
async def grant_credit(slug: str, request: Request, gw: GatewayDep, _admin: AdminDep) -> Any:
    body = parse_model(Grant, await read_capped(request, 64 * 1024))
    amount = _micros(body.usd, "/usd")
    if amount == 0:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "a grant must be more than 0 USD",
            details=[{"pointer": "/usd", "message": "zero"}],
        )
    event = await workspaces.grant_by_slug(gw.outbox, slug, amount, note=body.note)
    return JSONResponse(
        {"workspace": slug, "amount_micros": amount, "grant_id": str(event.id)}, status_code=202
    )


@router.post("/workspaces/{slug}/users", status_code=201)
async def create_user(slug: str, request: Request, gw: GatewayDep, _admin: AdminDep) -> Any:
    """A person who signs in to the console, made a member of the workspace (201 when the user
    is new, 200 when an existing user joined). A generated password is returned once."""
    body = parse_model(CreateUser, await read_capped(request, 16 * 1024))
    email = people.normalize_email(body.email)
    generated = body.password is None
    password = body.password if body.password is not None else secrets.token_urlsafe(15)
    passwords.check_new(password)
    existing = await people.find_user(gw.db, email)
    needs_hash = existing is None or body.reset_password
    added = await people.add_user(
        gw.outbox,
        workspace_slug=slug,
        email=email,
        password_hash=await passwords.hash_password(password) if needs_hash else None,
        role=body.role,
        reset_password=body.reset_password,
    )
    out: dict[str, Any] = {
        "user_id": str(added.user_id),
        "email": added.email,
        "workspace": slug,
        "role": added.role,
        "created": added.created,
    }
    if generated and needs_hash:
        out["password"] = password
    return JSONResponse(out, status_code=201 if added.created else 200)
