"""Encryption of secrets at rest: envelope encryption with AES-256-GCM.

Each workspace has a random 256-bit data key. It is stored wrapped (AES-GCM) by the master key
``PURAS_SECRETS_KEY``, whose id (a hash of the key, never the key) is stored beside it, so
rotating the master key re-wraps data keys and touches no secret. Every ciphertext is bound by
its associated data to where it belongs: a wrapped data key to its workspace and master key id,
a secret to its workspace, skillpack and name. A row copied anywhere else fails to decrypt.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from puras_common.settings import DEVELOPMENT_SECRET

NONCE_BYTES: Final = 12
KEY_BYTES: Final = 32


class VaultError(RuntimeError):
    """A ciphertext that does not decrypt where it is (moved, tampered with, or under a master
    key this process does not have)."""


class MasterKeyError(ValueError):
    """A master key setting that is not 32 bytes of hex."""


def parse_master_key(text: str) -> bytes:
    """A master key from 64 hex characters (the development default is derived, never stored)."""
    if text == DEVELOPMENT_SECRET:
        return hashlib.sha256(b"puras-development-secrets-key").digest()
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise MasterKeyError("PURAS_SECRETS_KEY must be hex (64 characters for 32 bytes)") from None
    if len(key) != KEY_BYTES:
        raise MasterKeyError(
            f"PURAS_SECRETS_KEY is {len(key)} bytes; it must be {KEY_BYTES} (64 hex characters)"
        )
    return key


def key_id(key: bytes) -> str:
    """A stable, non-reversible name for a master key."""
    return hashlib.sha256(b"puras/master-key-id/" + key).hexdigest()[:16]


def _seal(key: bytes, plain: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plain, aad)


def _open(key: bytes, sealed: bytes, aad: bytes, what: str) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise VaultError(
            f"{what} does not decrypt here: it was moved, altered, or sealed under another key"
        ) from None


def _data_key_aad(workspace_id: UUID, kid: str) -> bytes:
    return b"puras/data-key/v1/" + workspace_id.bytes + kid.encode()


def secret_aad(workspace_id: UUID, skillpack_id: UUID, name: str) -> bytes:
    """What a secret's ciphertext is bound to."""
    return b"puras/secret/v1/" + workspace_id.bytes + skillpack_id.bytes + name.encode()


@dataclass
class MasterKeys:
    """The current master key (new wraps) and earlier ones (reading until re-wrapped)."""

    current: bytes
    previous: tuple[bytes, ...] = ()
    _by_id: dict[str, bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {key_id(k): k for k in (*self.previous, self.current)}

    @classmethod
    def from_settings(cls, current: str, previous: Iterable[str] = ()) -> MasterKeys:
        return cls(
            parse_master_key(current), tuple(parse_master_key(p) for p in previous if p.strip())
        )

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def wrap(self, workspace_id: UUID, data_key: bytes) -> tuple[str, bytes]:
        """``(key id, wrapped data key)`` under the current master key."""
        kid = self.current_id
        return kid, _seal(self.current, data_key, _data_key_aad(workspace_id, kid))

    def unwrap(self, workspace_id: UUID, kid: str, wrapped: bytes) -> bytes:
        key = self._by_id.get(kid)
        if key is None:
            raise VaultError(
                f"the data key of workspace {workspace_id} is wrapped by master key {kid}, which this "
                "process does not have (add it to PURAS_SECRETS_PREVIOUS_KEYS)"
            )
        return _open(
            key,
            wrapped,
            _data_key_aad(workspace_id, kid),
            f"the data key of workspace {workspace_id}",
        )


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal_secret(
    data_key: bytes, *, workspace_id: UUID, skillpack_id: UUID, name: str, value: str
) -> bytes:
    return _seal(data_key, value.encode(), secret_aad(workspace_id, skillpack_id, name))


def open_secret(
    data_key: bytes, sealed: bytes, *, workspace_id: UUID, skillpack_id: UUID, name: str
) -> str:
    return _open(
        data_key, sealed, secret_aad(workspace_id, skillpack_id, name), f"secret {name}"
    ).decode()
