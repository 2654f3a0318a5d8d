"""Who is calling: an API key (``Authorization: Bearer puras_live_…``) or the operator's admin
token. Every failure is a 401 that says which of missing, malformed, wrong or revoked."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from puras_common.api import ApiError, ErrorCode

from puras_gateway import fences, keys
from puras_gateway.context import Gateway


async def gateway(request: Request) -> Gateway:
    # async: FastAPI would run a plain function in its thread pool, a hand-off on every request.
    return request.app.state.gateway


GatewayDep = Annotated[Gateway, Depends(gateway)]


@dataclass(frozen=True)
class Principal:
    """An authenticated API key and its fences."""

    workspace_id: UUID
    workspace_slug: str
    key_id: UUID
    kind: keys.KeyKind
    skillpack: str
    allowed_skills: tuple[str, ...] | None
    daily_cap_micros: int | None


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(
            ErrorCode.MISSING_KEY, f"missing API key: send 'Authorization: Bearer {keys.describe_shape()}'"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(ErrorCode.MALFORMED_KEY, "malformed Authorization header: expected 'Bearer <API key>'")
    return token.strip()


async def principal(request: Request, gw: GatewayDep) -> Principal:
    """The calling API key; 401 otherwise."""
    token = _bearer(request)
    parsed = keys.parse(token)
    if parsed is None:
        raise ApiError(
            ErrorCode.MALFORMED_KEY,
            f"malformed API key: expected {keys.describe_shape()} — the dot is part of the key",
        )
    row = await gw.db.fetchrow(
        """SELECT k.id, k.kind, k.secret_sha256, k.skillpack, k.allowed_skills, k.daily_cap_micros,
                  k.revoked_at, k.last_used_at, k.workspace_id, w.slug
           FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id WHERE k.prefix = $1""",
        parsed.prefix,
    )
    matches = keys.secret_matches(parsed.secret, row["secret_sha256"] if row else None)
    if row is None or not matches or row["kind"] != parsed.kind:
        raise ApiError(ErrorCode.INVALID_KEY, f"invalid API key: no active key matches prefix {parsed.prefix!r}")
    if row["revoked_at"] is not None:
        raise ApiError(
            ErrorCode.REVOKED_KEY, f"API key {parsed.prefix!r} was revoked at {row['revoked_at'].isoformat()}"
        )
    who = Principal(
        workspace_id=row["workspace_id"],
        workspace_slug=row["slug"],
        key_id=row["id"],
        kind=row["kind"],
        skillpack=row["skillpack"],
        allowed_skills=tuple(row["allowed_skills"]) if row["allowed_skills"] is not None else None,
        daily_cap_micros=row["daily_cap_micros"],
    )
    await fences.guard(request, gw, who, last_used_at=row["last_used_at"])
    return who


PrincipalDep = Annotated[Principal, Depends(principal)]


async def admin(request: Request, gw: GatewayDep) -> None:
    """The operator's admin token (``PURAS_ADMIN_TOKEN``)."""
    token = _bearer(request)
    expected = gw.settings.admin_token.get_secret_value()
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError(ErrorCode.INVALID_KEY, "invalid admin token")


AdminDep = Annotated[None, Depends(admin)]
