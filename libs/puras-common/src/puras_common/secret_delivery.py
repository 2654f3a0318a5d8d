"""Handing a skillpack's secrets to the runner of one job, and keeping them out of everything else.

At job start a runner asks the deployments service over NATS request/reply
(:data:`SUBJECT`), proving with the job's token that it runs that job. The reply is sealed to a
key pair the runner made for this one request (X25519 → HKDF-SHA256 → AES-256-GCM, bound to the
job id), so the values never cross the bus in clear: a subscriber to ``>`` or to the reply
inbox sees only ciphertext. The runner puts the values in the job's environment and masks them
(:class:`SecretMask`) in whatever it shows: log lines, errors, results.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nats.aio.client import Client as NATS

from puras_common import subjects
from puras_common.errors import PLATFORM_RETRY_SECONDS, TRANSIENT_ERRORS, backoff

SUBJECT: Final = subjects.svc("deployments", "secrets")
"""Request/reply endpoint of the deployments service: a job's secrets, sealed to the asker."""

MASK: Final = "***"
MIN_MASKED_CHARS: Final = 4
"""Shorter values are not masked: replacing every ``"1"`` or ``"ab"`` would wreck logs and
results while hiding nothing a guess would not find."""

_INFO: Final = b"puras/secrets/v1"


class SecretDeliveryError(RuntimeError):
    """The deployments service refused or could not answer a secrets request."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _key(shared: bytes, job_id: UUID) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=job_id.bytes, info=_INFO).derive(shared)


def seal(values: Mapping[str, str], *, reply_key: str, job_id: UUID) -> dict[str, str]:
    """Encrypt ``values`` to the requester's public key (base64 X25519)."""
    ephemeral = X25519PrivateKey.generate()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(base64.b64decode(reply_key)))
    nonce = os.urandom(12)
    sealed = AESGCM(_key(shared, job_id)).encrypt(nonce, orjson.dumps(dict(values)), job_id.bytes)
    return {"epk": _b64(_raw(ephemeral.public_key())), "nonce": _b64(nonce), "sealed": _b64(sealed)}


def _open(reply: Mapping[str, Any], private: X25519PrivateKey, job_id: UUID) -> dict[str, str]:
    shared = private.exchange(X25519PublicKey.from_public_bytes(base64.b64decode(reply["epk"])))
    try:
        plain = AESGCM(_key(shared, job_id)).decrypt(
            base64.b64decode(reply["nonce"]), base64.b64decode(reply["sealed"]), job_id.bytes
        )
    except InvalidTag:
        raise SecretDeliveryError("the secrets reply does not decrypt for this job") from None
    values = orjson.loads(plain)
    if not isinstance(values, dict):
        raise SecretDeliveryError("the secrets reply is not a mapping")
    return {str(k): str(v) for k, v in values.items()}


def new_reply_key() -> tuple[X25519PrivateKey, str]:
    """A one-off key pair for a request whose answer comes sealed: keep the private key, send
    the public one (base64) as the request's ``reply_key``."""
    private = X25519PrivateKey.generate()
    return private, _b64(_raw(private.public_key()))


def open_sealed(
    sealed: Mapping[str, Any], private: X25519PrivateKey, *, bound_to: UUID
) -> dict[str, str]:
    """The values :func:`seal` sealed to ``private``'s public key for ``bound_to`` (the id the
    sealer bound them to: a job, a webhook endpoint)."""
    return _open(sealed, private, bound_to)


async def fetch_secrets(
    nc: NATS,
    *,
    job_token: str,
    job_id: UUID,
    timeout: float = 2.0,
    give_up_after: float = PLATFORM_RETRY_SECONDS,
    subject: str = SUBJECT,
) -> dict[str, str]:
    """The secrets of the skillpack a job runs, as ``{NAME: value}``.

    ``job_token`` is the token minted for the job (it names workspace, job and skillpack). Named
    transient failures (no responder yet, a timeout) are retried with backoff for up to
    ``give_up_after`` seconds (the deployments service may be restarting); then
    :class:`SecretDeliveryError` says that nothing answered, and the last failure.
    """
    private = X25519PrivateKey.generate()
    request = orjson.dumps({"job_token": job_token, "reply_key": _b64(_raw(private.public_key()))})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    attempt = 0
    while True:
        try:
            msg = await nc.request(subject, request, timeout=timeout)
            break
        except TRANSIENT_ERRORS as exc:
            if loop.time() > deadline:
                raise SecretDeliveryError(
                    f"the platform's secrets service did not answer within {give_up_after:g} s "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            await asyncio.sleep(backoff(attempt, base=0.1, cap=1.0))
            attempt += 1
    reply = orjson.loads(msg.data)
    if not reply.get("ok"):
        raise SecretDeliveryError(str(reply.get("error", "secrets request refused")))
    return _open(reply, private, job_id)


class SecretMask:
    """Replaces every occurrence of a secret value with ``***`` in text and in JSON values.

    A value spanning several lines is also masked line by line, since output reaches the
    platform one line at a time.
    """

    def __init__(self, values: Iterable[str]) -> None:
        pieces: set[str] = set()
        for value in values:
            pieces.add(value)
            pieces.update(line for line in value.splitlines())
        kept = sorted((p for p in pieces if len(p) >= MIN_MASKED_CHARS), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, kept))) if kept else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        """``text`` with every secret value replaced."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def value(self, value: Any) -> Any:
        """A JSON value with every string (keys too) masked; other values unchanged."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {
                self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()
            }
        return value
