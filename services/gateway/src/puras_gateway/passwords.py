"""Passwords of people who sign in: argon2id (``argon2-cffi``'s RFC 9106 profile), hashed and
checked off the event loop, since one hash costs tens of milliseconds and 64 MiB by design.

An unknown email is checked against a hash of nothing, so a sign-in takes as long whether or
not the account exists.
"""

from __future__ import annotations

import asyncio
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from puras_common.api import ApiError, ErrorCode

MIN_LENGTH: Final = 10
MAX_LENGTH: Final = 1024
"""Characters. The upper bound keeps a hash's input bounded; argon2 would take any length."""

_HASHER: Final = PasswordHasher()
_NOBODY: Final = _HASHER.hash("no such user: this hash only spends the time a real check takes")


class WeakPassword(ApiError):
    """400: a new password outside the bounds, located at ``pointer``."""

    def __init__(self, *, length: int, pointer: str = "/password") -> None:
        problem = (
            f"is {length} characters; use at least {MIN_LENGTH}"
            if length < MIN_LENGTH
            else f"is {length} characters; the limit is {MAX_LENGTH}"
        )
        super().__init__(
            ErrorCode.INVALID_REQUEST,
            f"password {problem}",
            details=[{"pointer": pointer, "message": f"password {problem}"}],
        )


def check_new(password: str, *, pointer: str = "/password") -> None:
    """A password someone chooses: between ``MIN_LENGTH`` and ``MAX_LENGTH`` characters."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise WeakPassword(length=len(password), pointer=pointer)


async def hash_password(password: str) -> str:
    """The argon2id hash to store (with its salt and parameters)."""
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (None: no such user, checked all the same)."""
    if len(password) > MAX_LENGTH:
        return False
    return await asyncio.to_thread(_verify, stored or _NOBODY, password, stored is not None)


def _verify(stored: str, password: str, real: bool) -> bool:
    try:
        return _HASHER.verify(stored, password) and real
    except (VerificationError, InvalidHashError):
        return False
