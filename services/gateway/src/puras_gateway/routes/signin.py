"""``/v1/auth``: people sign in with email and password, and out; invitations are accepted.

``POST /v1/auth/login`` answers with the session token in an HttpOnly cookie (the console);
``POST /v1/auth/token`` answers with it in the body, for a script that sends it as
``Authorization: Bearer <jwt>`` with ``?workspace=``. Failed sign-ins are rate-limited per email
and per client address (:mod:`puras_gateway.logins`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway import logins, passwords, people, sessions
from puras_gateway.auth import GatewayDep, SessionDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.context import Gateway
from puras_gateway.openapi import ERRORS

router = APIRouter(prefix="/v1/auth", tags=["sessions"], responses=ERRORS)

BODY_LIMIT = 16 * 1024


class Credentials(BaseModel):
    """``POST /v1/auth/login`` and ``/v1/auth/token`` body."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=people.MAX_EMAIL)
    password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH)


class InvitationToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=10, max_length=200)


class Acceptance(InvitationToken):
    password: str = Field(
        min_length=1,
        max_length=passwords.MAX_LENGTH,
        description="A new account's password (10 characters at least), or an existing one's",
    )


class WorkspaceOut(BaseModel):
    id: str
    slug: str
    name: str
    role: Literal["owner", "member"]


class SessionOut(BaseModel):
    """A signed-in person: who, where they may act, and what the console needs."""

    user: dict[str, str]
    workspaces: list[WorkspaceOut]
    csrf_token: str
    """Send as ``X-CSRF-Token`` on requests signed in by cookie that change anything."""
    expires_at: datetime
    """When this token expires (renew with ``POST /v1/auth/refresh``)."""
    token: str | None = None
    """The session token itself: only from ``/v1/auth/token`` and a bearer refresh."""


def _limits(gw: Gateway) -> logins.Limits:
    s = gw.settings
    return logins.Limits(
        per_email=s.login_failures_per_email,
        per_ip=s.login_failures_per_ip,
        window_seconds=s.login_failure_window_seconds,
    )


def _ip(request: Request) -> str:
    return request.client.host if request.client else ""


async def _check_password(
    gw: Gateway, request: Request, *, email: str, stored: str | None, password: str
) -> None:
    """401 unless ``password`` matches; failures count towards the rate limit."""
    limits, ip = _limits(gw), _ip(request)
    await logins.check(gw.db, email=email, ip=ip, limits=limits)
    if not await passwords.verify(stored, password):
        await logins.failed(gw.db, email=email, ip=ip, limits=limits)
        raise ApiError(ErrorCode.INVALID_KEY, "wrong email or password")
    await logins.succeeded(gw.db, email=email)


async def _answer(
    gw: Gateway,
    request: Request,
    *,
    user_id: Any,
    email: str,
    issued: sessions.Issued,
    cookie: bool,
    with_token: bool,
) -> JSONResponse:
    workspaces = await people.workspaces_of(gw.db, user_id)
    out = SessionOut(
        user={"id": str(user_id), "email": email},
        workspaces=[
            WorkspaceOut(id=str(w["id"]), slug=w["slug"], name=w["name"], role=w["role"])
            for w in workspaces
        ],
        csrf_token=issued.claims.csrf,
        expires_at=datetime.fromtimestamp(issued.claims.expires_at, UTC),
        token=issued.token if with_token else None,
    )
    response = JSONResponse(out.model_dump(mode="json", exclude_none=True))
    if cookie:
        sessions.set_cookie(response, request, issued, secure=_secure(gw))
    return response


def _secure(gw: Gateway) -> bool:
    return gw.settings.base_url.startswith("https://")


async def _sign_in(gw: Gateway, request: Request, user_id: Any) -> sessions.Issued:
    s = gw.settings
    session_id, ends, csrf = await sessions.begin(
        gw.outbox,
        user_id=user_id,
        lasts=s.session_max_seconds,
        ip=_ip(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    return sessions.issue(
        s.session_key.get_secret_value(),
        user_id=user_id,
        session_id=session_id,
        csrf=csrf,
        ttl=s.session_token_seconds,
        ends=ends,
    )


async def _login(gw: Gateway, request: Request, *, cookie: bool) -> JSONResponse:
    body = parse_model(Credentials, await read_capped(request, BODY_LIMIT))
    email = people.normalize_email(body.email)
    user = await people.find_user(gw.db, email)
    await _check_password(
        gw,
        request,
        email=email,
        stored=user["password_hash"] if user else None,
        password=body.password,
    )
    assert user is not None
    issued = await _sign_in(gw, request, user["id"])
    return await _answer(
        gw,
        request,
        user_id=user["id"],
        email=email,
        issued=issued,
        cookie=cookie,
        with_token=not cookie,
    )


@router.post("/login", response_model=SessionOut)
async def login(request: Request, gw: GatewayDep) -> Any:
    """Sign in: the session token is set as an HttpOnly cookie; the answer holds the CSRF token."""
    sessions.check_origin(request)
    return await _login(gw, request, cookie=True)


@router.post("/token", response_model=SessionOut)
async def token(request: Request, gw: GatewayDep) -> Any:
    """Sign in for a script: the session token is in the answer (``token``), no cookie is set."""
    return await _login(gw, request, cookie=False)


@router.get("/session", response_model=SessionOut)
async def current(request: Request, gw: GatewayDep, who: SessionDep) -> Any:
    """Who is signed in, and the workspaces they may act in."""
    claims = who.claims
    issued = sessions.Issued(token="", claims=claims)
    return await _answer(
        gw,
        request,
        user_id=claims.user_id,
        email=who.email,
        issued=issued,
        cookie=False,
        with_token=False,
    )


@router.post("/refresh", response_model=SessionOut)
async def refresh(request: Request, gw: GatewayDep, who: SessionDep) -> Any:
    """A fresh token for the same session (its lifetime again, never past the session's end)."""
    issued = sessions.issue(
        gw.settings.session_key.get_secret_value(),
        user_id=who.claims.user_id,
        session_id=who.claims.session_id,
        csrf=who.claims.csrf,
        ttl=gw.settings.session_token_seconds,
        ends=who.ends_at,
    )
    return await _answer(
        gw,
        request,
        user_id=who.claims.user_id,
        email=who.email,
        issued=issued,
        cookie=who.by_cookie,
        with_token=not who.by_cookie,
    )


@router.post("/logout")
async def logout(request: Request, gw: GatewayDep, who: SessionDep) -> Any:
    """End the session: its token is refused from now on, and the cookie is cleared."""
    await sessions.end(gw.outbox, who.claims)
    response = JSONResponse({"signed_out": True})
    sessions.clear_cookie(response, request, secure=_secure(gw))
    return response


@router.post("/invitations/lookup")
async def lookup_invitation(request: Request, gw: GatewayDep) -> Any:
    """What an invitation link offers: the workspace, the role, and whether its email already has
    an account (then accepting takes that account's password)."""
    body = parse_model(InvitationToken, await read_capped(request, BODY_LIMIT))
    found = await people.pending(gw.db, body.token)
    return {
        "email": found["email"],
        "role": found["role"],
        "workspace": {"slug": found["slug"], "name": found["name"]},
        "account_exists": found["user_id"] is not None,
    }


@router.post("/invitations/accept", response_model=SessionOut)
async def accept_invitation(request: Request, gw: GatewayDep) -> Any:
    """Accept an invitation and sign in: a new account is created with ``password``; an existing
    account proves itself with its password."""
    sessions.check_origin(request)
    body = parse_model(Acceptance, await read_capped(request, BODY_LIMIT))
    found = await people.pending(gw.db, body.token)
    password_hash = None
    if found["user_id"] is not None:
        await _check_password(
            gw, request, email=found["email"], stored=found["password_hash"], password=body.password
        )
    else:
        passwords.check_new(body.password)
        password_hash = await passwords.hash_password(body.password)
    user_id = await people.accept(gw.outbox, invitation=found, password_hash=password_hash)
    issued = await _sign_in(gw, request, user_id)
    return await _answer(
        gw,
        request,
        user_id=user_id,
        email=found["email"],
        issued=issued,
        cookie=True,
        with_token=False,
    )
