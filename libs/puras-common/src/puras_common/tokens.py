"""Job tokens: short-lived credentials scoped to one workspace, one job and one attempt of it.

A runner mints one for each attempt it runs and gives it to the job's process as
``PURAS_JOB_TOKEN``; the in-skill SDK presents it to the gateway, which checks it in constant
time. ``pjt_<base64url(claims)>.<base64url(hmac-sha256)>``.

A token names its *audiences*, the services it opens: a job's own token opens its workspace's
drive and the media and subagent calls of that job (:data:`JOB_AUDIENCES`), never a job's
secrets, which the runner asks for with a token of its own (:data:`SECRETS`). A checker also
refuses a token whose attempt is no longer the job's running one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Final
from uuid import UUID

import orjson

PREFIX = "pjt_"

DRIVE: Final = "drive"
MEDIA: Final = "media"
SUBAGENTS: Final = "subagents"
SECRETS: Final = "secrets"
JOB_AUDIENCES: Final = (DRIVE, MEDIA, SUBAGENTS)
"""What the token given to a job's process opens."""


class TokenError(ValueError):
    """A token that is malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class JobClaims:
    workspace_id: UUID
    job_id: UUID
    skillpack_id: UUID
    expires_at: int
    attempt: int
    audiences: tuple[str, ...]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_job_token(
    key: str,
    *,
    workspace_id: UUID,
    job_id: UUID,
    skillpack_id: UUID,
    attempt: int,
    ttl_seconds: int,
    audiences: tuple[str, ...] = JOB_AUDIENCES,
) -> str:
    """A token for ``attempt`` of the job, for ``audiences``, valid for at most ``ttl_seconds``."""
    claims = {
        "w": str(workspace_id),
        "j": str(job_id),
        "s": str(skillpack_id),
        "a": attempt,
        "u": list(audiences),
        "e": int(time.time()) + ttl_seconds,
    }
    body = _b64(orjson.dumps(claims))
    mac = hmac.new(key.encode(), body.encode(), hashlib.sha256).digest()
    return f"{PREFIX}{body}.{_b64(mac)}"


def verify_job_token(key: str, token: str, *, audience: str, now: float | None = None) -> JobClaims:
    """The token's claims, or :class:`TokenError` (also for a token not meant for
    ``audience``). Whether its attempt still runs is for the caller to check."""
    if not token.startswith(PREFIX) or token.count(".") != 1:
        raise TokenError("malformed job token")
    body, mac = token[len(PREFIX) :].split(".")
    expected = hmac.new(key.encode(), body.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(mac)
    except (ValueError, TypeError):
        raise TokenError("malformed job token") from None
    if not hmac.compare_digest(expected, given):
        raise TokenError("job token signature does not match")
    claims = orjson.loads(_unb64(body))
    if claims["e"] < (now if now is not None else time.time()):
        raise TokenError("job token expired")
    audiences = tuple(str(a) for a in claims.get("u", ()))
    if audience not in audiences:
        raise TokenError(
            f"this job token does not open {audience} (it opens: {', '.join(audiences) or 'nothing'})"
        )
    return JobClaims(
        UUID(claims["w"]),
        UUID(claims["j"]),
        UUID(claims["s"]),
        int(claims["e"]),
        attempt=int(claims["a"]),
        audiences=audiences,
    )
