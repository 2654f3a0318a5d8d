"""Who is calling: an API key (``Authorization: Bearer puras_live_…``), a person signed in (a
session token, from the console's cookie or as ``Authorization: Bearer <jwt>``), or the
operator's admin token. Every failure is a 401 that says which of missing, malformed, wrong,
expired or revoked.

A key belongs to one workspace. A person may belong to several, so a request with a session
token names the workspace it acts in (``?workspace=<slug or id>``), and is refused as not found
where they are not a member. Requests signed in by cookie that change anything must pass the
CSRF checks of :mod:`puras_gateway.sessions`.
"""

from __future__ import annotations

import hmac
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from puras_common.api import ApiError, ErrorCode

from puras_gateway import fences, keys, people, quotas, sessions
from puras_gateway.context import Gateway
from puras_gateway.keys import Principal
from puras_gateway.sessions import SessionClaims


async def gateway(request: Request) -> Gateway:
    # async: FastAPI would run a plain function in its thread pool, a hand-off on every request.
    gw: Gateway = request.app.state.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(gateway)]

__all__ = [
    "AdminDep",
    "GatewayDep",
    "Principal",
    "PrincipalDep",
    "SessionDep",
    "admin",
    "gateway",
    "principal",
    "require_owner",
    "require_person_owner",
]

WorkspaceQuery = Annotated[
    str | None,
    Query(
        max_length=100,
        description="With a session token (a person signed in): the workspace to act in, by slug "
        "or id. An API key belongs to one workspace and ignores it.",
    ),
]


def _credential(request: Request) -> tuple[str, bool]:
    """The bearer token, or the session cookie; and whether it came from the cookie."""
    header = request.headers.get("authorization")
    if not header:
        if cookie := sessions.from_cookie(request):
            return cookie, True
        raise ApiError(
            ErrorCode.MISSING_KEY,
            f"missing API key: send 'Authorization: Bearer {keys.describe_shape()}'",
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            ErrorCode.MALFORMED_KEY, "malformed Authorization header: expected 'Bearer <API key>'"
        )
    return token.strip(), False


async def principal(
    request: Request, gw: GatewayDep, workspace: WorkspaceQuery = None
) -> Principal:
    """The calling API key or signed-in person, in the workspace it acts in; 401 otherwise."""
    token, by_cookie = _credential(request)
    if sessions.looks_like_jwt(token):
        person = await _person(request, gw, token, by_cookie=by_cookie, workspace=workspace)
        _limit_rate(request, gw, ("user", person.user_id))
        return person
    parsed = keys.parse(token)
    if parsed is None:
        raise ApiError(
            ErrorCode.MALFORMED_KEY,
            f"malformed API key: expected {keys.describe_shape()} — the dot is part of the key",
        )
    row = await keys.lookup(gw.db, parsed.prefix)
    matches = keys.secret_matches(parsed.secret, row["secret_sha256"] if row else None)
    if row is None or not matches or row["kind"] != parsed.kind:
        raise ApiError(
            ErrorCode.INVALID_KEY,
            f"invalid API key: no active key matches prefix {parsed.prefix!r}",
        )
    if row["revoked_at"] is not None:
        raise ApiError(
            ErrorCode.REVOKED_KEY,
            f"API key {parsed.prefix!r} was revoked at {row['revoked_at'].isoformat()}",
        )
    _limit_rate(request, gw, row["id"])
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


def _limit_rate(
    request: Request, gw: Gateway, caller: Hashable, *, shown: str = "this key"
) -> None:
    """Spend one request of the caller's rate; 429 past it. The answer carries the RateLimit
    fields either way."""
    decision = gw.rate.take(caller)
    setattr(request.state, quotas.STATE_KEY, decision)
    if not decision.allowed:
        raise quotas.RateLimited(decision, caller=shown)


def limit_address(request: Request, gw: Gateway) -> None:
    """Spend one request of the client address's rate, for a public route that does work for
    whoever asks (the same bucket size as a key's, counted apart from every key's)."""
    host = request.client.host if request.client else ""
    _limit_rate(request, gw, ("address", host), shown="this address")


@dataclass(frozen=True)
class Session:
    """A live session and its token's claims."""

    claims: SessionClaims
    email: str
    ends_at: datetime
    """The session's own end, however often its token is renewed."""
    by_cookie: bool


async def _session(request: Request, gw: Gateway, token: str, *, by_cookie: bool) -> Session:
    claims = sessions.verify(gw.settings.session_key.get_secret_value(), token)
    if by_cookie:
        sessions.check_csrf(request, claims)
    row = await sessions.live(gw.db, claims)
    return Session(claims, row["email"], row["expires_at"], by_cookie)


async def _person(
    request: Request, gw: Gateway, token: str, *, by_cookie: bool, workspace: str | None
) -> Principal:
    found = await _session(request, gw, token, by_cookie=by_cookie)
    user_id = found.claims.user_id
    if not workspace:
        yours = [r["slug"] for r in await people.workspaces_of(gw.db, user_id)]
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "a session token acts in one workspace: add ?workspace=<slug> "
            f"(yours: {', '.join(yours) or 'none'})",
            details=[{"pointer": "?workspace", "message": "required with a session token"}],
        )
    member = await people.membership(gw.db, user_id, workspace)
    if member is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"workspace {workspace!r} not found")
    return Principal(
        workspace_id=member["id"],
        workspace_slug=member["slug"],
        key_id=None,
        kind="user",
        skillpack="default",
        allowed_skills=None,
        daily_cap_micros=None,
        user_id=user_id,
        role=member["role"],
    )


async def session(request: Request, gw: GatewayDep) -> Session:
    """A signed-in person, whatever workspace; 401 otherwise (API keys included)."""
    token, by_cookie = _credential(request)
    if not sessions.looks_like_jwt(token):
        raise ApiError(
            ErrorCode.INVALID_KEY, "this endpoint takes a session token: sign in to the console"
        )
    return await _session(request, gw, token, by_cookie=by_cookie)


SessionDep = Annotated[Session, Depends(session)]


def require_owner(who: Principal, what: str) -> None:
    """Owners (and secret keys, which owners mint) manage ``what``; members and publishable keys
    get 403."""
    if who.kind == "publishable":
        raise ApiError(ErrorCode.FORBIDDEN, f"managing {what} needs a secret key")
    if who.kind == "user" and who.role != "owner":
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"only owners of workspace {who.workspace_slug!r} manage {what}; you are a member",
        )


def require_person_owner(who: Principal, what: str) -> None:
    """Only an owner signed in manages ``what``: no API key may (a key cannot add people)."""
    if who.kind != "user":
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"{what} are managed by an owner signed in to the console, not with an API key",
        )
    require_owner(who, what)


async def admin(request: Request, gw: GatewayDep) -> None:
    """The operator's admin token (``PURAS_ADMIN_TOKEN``)."""
    token, by_cookie = _credential(request)
    expected = gw.settings.admin_token.get_secret_value()
    if by_cookie or not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError(ErrorCode.INVALID_KEY, "invalid admin token")


AdminDep = Annotated[None, Depends(admin)]
