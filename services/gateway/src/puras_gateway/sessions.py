"""Sessions of people signed in: a ``sessions`` row, and short-lived JWTs (HS256) that name it.

The browser holds the token in an HttpOnly, ``SameSite=Strict`` cookie (``Secure`` over HTTPS);
an API client may send the same token as ``Authorization: Bearer <jwt>``. A token lives
``session_token_seconds`` and is renewed while the console is open, up to the session's own end
(``session_max_seconds`` after sign-in). Every request reads the session row, so signing out ends
a token at once, although the token itself has not expired.

CSRF: a request authenticated by the cookie and changing state (anything but GET, HEAD,
OPTIONS) must carry ``X-CSRF-Token`` equal to the token's ``csrf`` claim, and, when the browser
sends an ``Origin``, come from this gateway's own host. The claim is inside the signed token,
which page scripts cannot read (HttpOnly): the console learns it from the page it was served or
from the sign-in answer. A bearer token needs neither check, because a browser never attaches
it to a request by itself.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import jwt
from fastapi import Request, Response
from puras_common.api import ApiError, ErrorCode
from puras_common.events import UserSignedIn, UserSignedOut
from puras_common.events.people import UserSignedInPayload, UserSignedOutPayload
from puras_common.ids import new_id, parse_id
from puras_common.outbox import Outbox

COOKIE: Final = "puras_session"
CSRF_HEADER: Final = "X-CSRF-Token"
ISSUER: Final = "puras"
AUDIENCE: Final = "puras-api"
ALGORITHM: Final = "HS256"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class SessionClaims:
    """What a verified session token says."""

    user_id: UUID
    session_id: UUID
    csrf: str
    expires_at: int
    """Unix seconds."""


class SessionError(ApiError):
    """401: a session token that is malformed, forged, expired or ended; the message says which."""

    def __init__(self, reason: str, *, code: ErrorCode = ErrorCode.INVALID_KEY) -> None:
        super().__init__(code, f"{reason}; sign in again")


def looks_like_jwt(token: str) -> bool:
    """A JWT's shape (three base64url parts, the first a JSON object), not a key's."""
    return token.startswith("eyJ") and token.count(".") == 2


def mint(key: str, *, user_id: UUID, session_id: UUID, csrf: str, expires_at: int) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(user_id),
        "sid": str(session_id),
        "csrf": csrf,
        "iat": now,
        "exp": expires_at,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(key: str, token: str) -> SessionClaims:
    """The token's claims; :class:`SessionError` for anything else."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "sid", "csrf"]},
        )
    except jwt.ExpiredSignatureError:
        raise SessionError("session token expired") from None
    except jwt.InvalidTokenError as exc:
        raise SessionError(f"invalid session token ({type(exc).__name__})") from None
    user_id, session_id = parse_id(str(claims["sub"])), parse_id(str(claims["sid"]))
    if user_id is None or session_id is None or not isinstance(claims["csrf"], str):
        raise SessionError("invalid session token (claims)")
    return SessionClaims(user_id, session_id, claims["csrf"], int(claims["exp"]))


@dataclass(frozen=True)
class Issued:
    """A token just minted, and what the console needs to use it."""

    token: str
    claims: SessionClaims


def issue(
    key: str, *, user_id: UUID, session_id: UUID, csrf: str, ttl: int, ends: datetime
) -> Issued:
    """A token for the session, living ``ttl`` seconds but never past the session's end."""
    expires_at = min(int(time.time()) + ttl, int(ends.timestamp()))
    token = mint(key, user_id=user_id, session_id=session_id, csrf=csrf, expires_at=expires_at)
    return Issued(token, SessionClaims(user_id, session_id, csrf, expires_at))


async def begin(
    outbox: Outbox, *, user_id: UUID, lasts: int, ip: str, user_agent: str
) -> tuple[UUID, datetime, str]:
    """A new session of ``user_id`` (and its ``user.signed_in``): its id, end and CSRF token."""
    session_id = new_id()
    ends = datetime.now(UTC) + timedelta(seconds=lasts)
    async with outbox.transaction() as uow:
        await uow.conn.execute(
            """INSERT INTO sessions (id, user_id, expires_at, ip, user_agent)
               VALUES ($1, $2, $3, $4, $5)""",
            session_id,
            user_id,
            ends,
            ip,
            user_agent[:500],
        )
        uow.emit(
            UserSignedIn.new(
                UserSignedInPayload(
                    user_id=user_id, session_id=session_id, ip=ip, user_agent=user_agent[:500]
                ),
                producer="gateway",
            )
        )
    return session_id, ends, secrets.token_urlsafe(32)


async def end(outbox: Outbox, claims: SessionClaims) -> None:
    """End a session (again: a no-op), with its ``user.signed_out``."""
    async with outbox.transaction() as uow:
        ended = await uow.conn.fetchval(
            """UPDATE sessions SET ended_at = now()
               WHERE id = $1 AND user_id = $2 AND ended_at IS NULL RETURNING true""",
            claims.session_id,
            claims.user_id,
        )
        if ended:
            uow.emit(
                UserSignedOut.new(
                    UserSignedOutPayload(user_id=claims.user_id, session_id=claims.session_id),
                    producer="gateway",
                )
            )


async def live(conn: asyncpg.Pool | asyncpg.Connection, claims: SessionClaims) -> asyncpg.Record:
    """The session row behind a verified token, with its user; 401 once it ended or expired."""
    row = await conn.fetchrow(
        """SELECT s.expires_at, s.ended_at, u.id AS user_id, u.email
           FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND s.user_id = $2""",
        claims.session_id,
        claims.user_id,
    )
    if row is None:
        raise SessionError("unknown session")
    if row["ended_at"] is not None:
        raise SessionError(
            f"session ended at {row['ended_at'].isoformat()}", code=ErrorCode.REVOKED_KEY
        )
    if row["expires_at"] <= datetime.now(UTC):
        raise SessionError(f"session expired at {row['expires_at'].isoformat()}")
    return row


def from_cookie(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or None


def set_cookie(response: Response, request: Request, issued: Issued, *, secure: bool) -> None:
    """The token as an HttpOnly, SameSite=Strict cookie that expires with it."""
    response.set_cookie(
        COOKIE,
        issued.token,
        max_age=max(0, issued.claims.expires_at - int(time.time())),
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure or request.url.scheme == "https",
    )


def clear_cookie(response: Response, request: Request, *, secure: bool) -> None:
    response.delete_cookie(
        COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure or request.url.scheme == "https",
    )


def check_csrf(request: Request, claims: SessionClaims) -> None:
    """403 for a cookie-authenticated request that changes state without proving it came from
    the console: the ``X-CSRF-Token`` header, and a same-host ``Origin`` when one is sent."""
    if request.method in SAFE_METHODS:
        return
    check_origin(request)
    given = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(given.encode(), claims.csrf.encode()):
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"{'missing' if not given else 'wrong'} {CSRF_HEADER} header: a request signed in by "
            "cookie that changes anything must carry the CSRF token the console was given",
        )


def check_origin(request: Request) -> None:
    """403 when the browser says the request comes from a page of another host."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"cross-origin request from {origin!r} refused: sessions are only used by pages of "
            f"this gateway ({host}); other origins call the API with an API key",
        )
