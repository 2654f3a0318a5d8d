"""API keys: ``puras_live_<prefix>.<secret>`` (secret keys) and ``puras_pub_<prefix>.<secret>``
(publishable keys); 8 + 32 base62 characters. Only the prefix and sha256(secret) are stored,
and the check takes the same time whether or not the prefix exists."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from typing import Final, Literal

KIND_PREFIX: Final = {"secret": "puras_live_", "publishable": "puras_pub_"}
_BASE62: Final = string.ascii_letters + string.digits
_SHAPE: Final = re.compile(r"^(puras_live_|puras_pub_)([A-Za-z0-9]{8})\.([A-Za-z0-9]{32})$")
_DUMMY_HASH: Final = hashlib.sha256(b"no such key").digest()

KeyKind = Literal["secret", "publishable"]


@dataclass(frozen=True)
class MintedKey:
    token: str
    """Shown once, never stored."""
    kind: KeyKind
    prefix: str
    secret_sha256: bytes


@dataclass(frozen=True)
class ParsedKey:
    kind: KeyKind
    prefix: str
    secret: str


def _random(n: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(n))


def mint(kind: KeyKind = "secret") -> MintedKey:
    prefix, secret = _random(8), _random(32)
    return MintedKey(
        token=f"{KIND_PREFIX[kind]}{prefix}.{secret}",
        kind=kind,
        prefix=prefix,
        secret_sha256=hashlib.sha256(secret.encode()).digest(),
    )


def parse(token: str) -> ParsedKey | None:
    """The key's parts, or None if it does not have the shape of a key."""
    match = _SHAPE.match(token)
    if not match:
        return None
    kind: KeyKind = "secret" if match.group(1) == "puras_live_" else "publishable"
    return ParsedKey(kind, match.group(2), match.group(3))


def secret_matches(secret: str, stored: bytes | None) -> bool:
    """Constant-time comparison of sha256(secret) with the stored hash (or a dummy)."""
    digest = hashlib.sha256(secret.encode()).digest()
    return hmac.compare_digest(digest, stored if stored is not None else _DUMMY_HASH) and stored is not None


def describe_shape() -> str:
    return "puras_live_<8 letters or digits>.<32 letters or digits>"
