"""API keys: ``puras_live_<prefix>.<secret>`` (secret keys) and ``puras_pub_<prefix>.<secret>``
(publishable keys); 8 + 32 base62 characters. Only the prefix and sha256(secret) are stored,
and the check takes the same time whether or not the prefix exists.

The ``api_keys`` table is read and written here: minting, listing, revoking, and finding the
key a request presents.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal
from uuid import UUID

import asyncpg
from puras_common.api import ApiError, ErrorCode, ErrorDetail
from puras_common.db import fetch_one
from puras_common.events import KeyCreated, KeyRevoked
from puras_common.events.platform import KeyCreatedPayload, KeyRevokedPayload
from puras_common.ids import new_id
from puras_common.outbox import Outbox

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
    return (
        hmac.compare_digest(digest, stored if stored is not None else _DUMMY_HASH)
        and stored is not None
    )


def describe_shape() -> str:
    return "puras_live_<8 letters or digits>.<32 letters or digits>"


CallerKind = Literal["secret", "publishable", "user"]
"""An API key of either kind, or a person signed in (a session token)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller acting in one workspace: an API key and its fences, or a person
    signed in, with their role there."""

    workspace_id: UUID
    workspace_slug: str
    key_id: UUID | None
    """None for a person."""
    kind: CallerKind
    skillpack: str
    allowed_skills: tuple[str, ...] | None
    daily_cap_micros: int | None
    user_id: UUID | None = None
    role: Literal["owner", "member"] | None = None
    """A person's role in the workspace (None for keys)."""

    @property
    def is_person(self) -> bool:
        return self.kind == "user"


def publishable_folder(key_id: UUID) -> str:
    """Where a publishable key's uploads go, each under a generated name: a folder of its own,
    so an app's users can neither replace a workspace's files nor choose their names."""
    return f"uploads/pub-{key_id}"


def covers(granted: str, asked: str) -> bool:
    """Whether allowlist entry ``granted`` allows every skill that ``asked`` does: the same
    address, or ``asked`` is a longer form of it (``default/echo`` and ``acme/default/echo``
    are narrower than ``echo``, never the other way round)."""
    return asked == granted or asked.endswith("/" + granted)


def wider_rights(
    holder: Principal,
    *,
    kind: str,
    allowed_skills: Sequence[str] | None,
    daily_cap_micros: int | None,
) -> list[ErrorDetail]:
    """What a key with these rights could do that ``holder`` cannot, one detail per excess
    (empty: equal or narrower). People signed in (owners) are not bounded by a key's rights."""
    if holder.kind == "user":
        return []
    wider: list[ErrorDetail] = []
    if holder.kind == "publishable" and kind != "publishable":
        wider.append(
            ErrorDetail(pointer="/kind", message="a publishable key cannot grant a secret key")
        )
    if holder.allowed_skills is not None:
        if allowed_skills is None:
            wider.append(
                ErrorDetail(
                    pointer="/allowed_skills",
                    message=f"must be given, and within this key's: {', '.join(holder.allowed_skills)}",
                )
            )
        else:
            for index, asked in enumerate(allowed_skills):
                if not any(covers(granted, asked) for granted in holder.allowed_skills):
                    wider.append(
                        ErrorDetail(
                            pointer=f"/allowed_skills/{index}",
                            message=f"{asked!r} is not within this key's allowed_skills",
                        )
                    )
    if holder.daily_cap_micros is not None and (
        daily_cap_micros is None or daily_cap_micros > holder.daily_cap_micros
    ):
        wider.append(
            ErrorDetail(
                pointer="/daily_cap_micros",
                message=f"must be given, at most this key's cap of {holder.daily_cap_micros} micros",
            )
        )
    return wider


async def lookup(conn: asyncpg.Connection | asyncpg.Pool, prefix: str) -> asyncpg.Record | None:
    """The key with ``prefix`` and its workspace's slug, revoked or not."""
    return await conn.fetchrow(
        """SELECT k.id, k.kind, k.secret_sha256, k.skillpack, k.allowed_skills, k.daily_cap_micros,
                  k.revoked_at, k.last_used_at, k.workspace_id, w.slug
           FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id WHERE k.prefix = $1""",
        prefix,
    )


async def touch(conn: asyncpg.Connection | asyncpg.Pool, key_id: UUID) -> None:
    """Set ``last_used_at``, unless it was set less than a minute ago."""
    await conn.execute(
        """UPDATE api_keys SET last_used_at = now()
           WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""",
        key_id,
    )


async def daily_cap(conn: asyncpg.Connection | asyncpg.Pool, key_id: UUID) -> int | None:
    """A key's daily spend cap in micros (None: no cap)."""
    cap: int | None = await conn.fetchval(
        "SELECT daily_cap_micros FROM api_keys WHERE id = $1", key_id
    )
    return cap


async def insert(
    conn: asyncpg.Connection,
    *,
    workspace_id: UUID,
    kind: KeyKind = "secret",
    name: str = "",
    skillpack: str = "default",
    allowed_skills: list[str] | None = None,
    daily_cap_micros: int | None = None,
) -> tuple[UUID, MintedKey]:
    """Mint a key and store its prefix and hash; the token is only in the answer."""
    minted = mint(kind)
    key_id = new_id()
    await conn.execute(
        """INSERT INTO api_keys (id, workspace_id, kind, prefix, secret_sha256, name, skillpack,
                                 allowed_skills, daily_cap_micros)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        key_id,
        workspace_id,
        kind,
        minted.prefix,
        minted.secret_sha256,
        name,
        skillpack,
        allowed_skills,
        daily_cap_micros,
    )
    return key_id, minted


LISTED_COLUMNS: Final = """id, kind, name, prefix, skillpack, allowed_skills, daily_cap_micros, created_at, last_used_at, revoked_at,
coalesce((SELECT spent_micros FROM key_spend s
          WHERE s.key_id = api_keys.id AND s.day = (now() AT TIME ZONE 'UTC')::date), 0) AS spent_today_micros"""
"""A key as it is listed: never its hash, with what it spent since midnight UTC."""


async def create(
    outbox: Outbox,
    *,
    workspace_id: UUID,
    kind: KeyKind,
    name: str,
    skillpack: str,
    allowed_skills: list[str] | None,
    daily_cap_micros: int | None,
) -> tuple[asyncpg.Record, MintedKey]:
    """A new key of the workspace, as listed, with its ``key.created`` event."""
    async with outbox.transaction() as uow:
        key_id, minted = await insert(
            uow.conn,
            workspace_id=workspace_id,
            kind=kind,
            name=name,
            skillpack=skillpack,
            allowed_skills=allowed_skills,
            daily_cap_micros=daily_cap_micros,
        )
        row = await fetch_one(
            uow.conn, f"SELECT {LISTED_COLUMNS} FROM api_keys WHERE id = $1", key_id
        )
        uow.emit(
            KeyCreated.new(
                KeyCreatedPayload(
                    key_id=key_id,
                    kind=kind,
                    prefix=minted.prefix,
                    name=name,
                    skillpack=skillpack,
                    allowed_skills=tuple(allowed_skills) if allowed_skills is not None else None,
                    daily_cap_micros=daily_cap_micros,
                ),
                producer="gateway",
                workspace_id=workspace_id,
            )
        )
    return row, minted


async def page(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, *, after: UUID | None, limit: int
) -> list[asyncpg.Record]:
    """Up to ``limit`` keys of a workspace, newest first, older than ``after`` if given."""
    return await conn.fetch(
        f"""SELECT {LISTED_COLUMNS} FROM api_keys WHERE workspace_id = $1 AND ($2::uuid IS NULL OR id < $2)
            ORDER BY id DESC LIMIT $3""",
        workspace_id,
        after,
        limit,
    )


async def revoke(
    outbox: Outbox, *, workspace_id: UUID, key_id: UUID | None, shown: str
) -> asyncpg.Record:
    """Revoke a key of the workspace (again: a no-op) and return it as listed; 404 for a key
    that is not the workspace's, 409 for its last active secret key."""
    async with outbox.transaction() as uow:
        # Lock the workspace's keys so two revocations cannot leave it with no secret key.
        rows = await uow.conn.fetch(
            "SELECT id, kind, prefix, revoked_at FROM api_keys WHERE workspace_id = $1 ORDER BY id FOR UPDATE",
            workspace_id,
        )
        target = next((r for r in rows if r["id"] == key_id), None)
        if target is None or key_id is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"key {shown} not found")
        if target["revoked_at"] is None:
            live_secret = [r for r in rows if r["kind"] == "secret" and r["revoked_at"] is None]
            if target["kind"] == "secret" and len(live_secret) == 1:
                raise ApiError(
                    ErrorCode.CONFLICT,
                    f"key {shown} is the workspace's last active secret key; mint another before revoking it",
                )
            await uow.conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
            uow.emit(
                KeyRevoked.new(
                    KeyRevokedPayload(key_id=key_id, prefix=target["prefix"]),
                    producer="gateway",
                    workspace_id=workspace_id,
                )
            )
        return await fetch_one(
            uow.conn, f"SELECT {LISTED_COLUMNS} FROM api_keys WHERE id = $1", key_id
        )


async def by_id(conn: asyncpg.Connection | asyncpg.Pool, key_id: UUID) -> asyncpg.Record | None:
    """A key by id with its workspace's slug, revoked or not (what a schedule it made runs as)."""
    return await conn.fetchrow(
        """SELECT k.id, k.kind, k.prefix, k.skillpack, k.allowed_skills, k.daily_cap_micros,
                  k.revoked_at, k.workspace_id, w.slug
           FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id WHERE k.id = $1""",
        key_id,
    )
