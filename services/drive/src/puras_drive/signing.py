"""Signed URLs: an HMAC-SHA256 over method, workspace, path, expiry and key id.

The platform serves them itself, from either backend, so a link may live as long as the
platform says (30 days for ``sign``, 10 years for ``share``) rather than the 7 days an S3
presigned URL allows. ``PURAS_DRIVE_SIGNING_KEY`` signs; keys listed in
``PURAS_DRIVE_SIGNING_KEYS_RETIRED`` still verify, so a rotation can keep recent links working, and
dropping a key from both revokes every link it signed at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote
from uuid import UUID

from puras_common.api import ApiError, ErrorCode

MIN_TTL_SECONDS: Final = 30
MAX_TTL_SECONDS: Final = 30 * 24 * 3600
DEFAULT_TTL_SECONDS: Final = 3600
SHARE_TTL_SECONDS: Final = 10 * 365 * 24 * 3600
"""``share`` links: ten years, revocable only by rotating the key."""

FILES_ROUTE: Final = "/v1/drive/files"
"""Where the gateway serves signed links: ``/v1/drive/files/<workspace_id>/<path>?exp&kid&sig``."""

_DOMAIN: Final = "puras-drive-url-v1"


class SignatureRefused(ApiError):
    """A signed URL that is malformed, tampered with, expired, or not for this workspace."""

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.FORBIDDEN, f"signed URL refused: {reason}")


class TtlOutOfRange(ApiError):
    def __init__(self, ttl: int) -> None:
        super().__init__(
            ErrorCode.INVALID_REQUEST,
            f"ttl={ttl} is out of range: a signed URL lives {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} seconds (30 days)",
            details=[
                {"pointer": "?ttl", "message": f"must be in {MIN_TTL_SECONDS}..{MAX_TTL_SECONDS}"}
            ],
        )


def check_ttl(ttl: int) -> int:
    if not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS:
        raise TtlOutOfRange(ttl)
    return ttl


def key_id(key: str) -> str:
    """A short public name for a key: which one signed a URL, without revealing it."""
    return hashlib.sha256(f"{_DOMAIN}:kid:{key}".encode()).hexdigest()[:10]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SignedLink:
    url: str
    expires_at: int


class Signer:
    """Mints and checks signed links for one installation."""

    def __init__(self, key: str, *, retired: Iterable[str] = (), base_url: str) -> None:
        if not key:
            raise ValueError("PURAS_DRIVE_SIGNING_KEY is empty")
        self.kid = key_id(key)
        self._keys = {key_id(k): k.encode() for k in (*retired, key) if k}
        self.base_url = base_url.rstrip("/")

    def _mac(
        self, key: bytes, *, method: str, workspace_id: UUID, path: str, expires_at: int, kid: str
    ) -> bytes:
        message = "\n".join(
            (_DOMAIN, method.upper(), str(workspace_id), path, str(expires_at), kid)
        )
        return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()

    def sign(
        self, workspace_id: UUID, path: str, *, ttl: int, now: float | None = None
    ) -> SignedLink:
        """A GET link to ``path`` (already normalised) valid for ``ttl`` seconds."""
        expires_at = int(now if now is not None else time.time()) + ttl
        mac = self._mac(
            self._keys[self.kid],
            method="GET",
            workspace_id=workspace_id,
            path=path,
            expires_at=expires_at,
            kid=self.kid,
        )
        query = f"exp={expires_at}&kid={self.kid}&sig={_b64(mac)}"
        url = f"{self.base_url}{FILES_ROUTE}/{workspace_id}/{quote(path, safe='/')}?{query}"
        return SignedLink(url=url, expires_at=expires_at)

    def verify(
        self,
        workspace_id: UUID,
        path: str,
        *,
        exp: str | None,
        kid: str | None,
        sig: str | None,
        method: str = "GET",
        now: float | None = None,
    ) -> None:
        """Pass, or :class:`SignatureRefused` saying why. The MAC is compared in constant time,
        and checked before the expiry so that a forged link learns nothing from the answer."""
        if not exp or not kid or not sig or not exp.isdigit() or len(exp) > 12:
            raise SignatureRefused("it lacks a valid exp, kid and sig")
        key = self._keys.get(kid)
        if key is None:
            raise SignatureRefused(
                "it was signed with a key that is no longer valid (the signing key was rotated)"
            )
        expected = _b64(
            self._mac(
                key,
                method=method,
                workspace_id=workspace_id,
                path=path,
                expires_at=int(exp),
                kid=kid,
            )
        )
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", errors="replace")):
            raise SignatureRefused("the signature does not match this workspace, path and expiry")
        current = int(now if now is not None else time.time())
        if int(exp) < current:
            raise SignatureRefused(f"it expired {current - int(exp)} s ago")
