"""Skillpack secrets: set, list (names only), delete, and decrypt for the job that runs.

Values are sealed with the workspace's data key (:mod:`puras_deployments.vault`) before they
reach the database and are decrypted only to answer a runner's request for one job, sealed
again to that runner (:mod:`puras_common.secret_delivery`). No value is logged, put in an event
or returned by the API.

Every job asks, so answers come from memory: the sealed rows of each skillpack asked about
(never the plaintext) are kept until a change anywhere invalidates them (``NOTIFY`` in the
changing transaction, heard by every replica). While that listener is not connected, nothing
is cached.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final
from uuid import UUID

import asyncpg
import orjson
from nats.aio.msg import Msg
from puras_common import tokens
from puras_common.api import ApiError, ErrorCode
from puras_common.db import as_connection, connect, fetch_one
from puras_common.errors import backoff, dependency_down
from puras_common.events import SecretDeleted, SecretSet
from puras_common.events.platform import SecretDeletedPayload, SecretSetPayload
from puras_common.logging import get_logger
from puras_common.outbox import Outbox
from puras_common.secret_delivery import seal
from puras_common.tokens import TokenError, verify_job_token

from puras_deployments import skillpacks, vault

log = get_logger("puras_deployments.secrets")

NAME: Final = re.compile(r"^[A-Z_][A-Z0-9_]*$")
MAX_NAME_CHARS: Final = 128
MAX_VALUE_BYTES: Final = 32 * 1024
MAX_SECRETS: Final = 200
MAX_TOTAL_BYTES: Final = 256 * 1024
"""All values of one skillpack together; they travel to the runner in one message."""
CHANNEL: Final = "puras_deployments_secrets"
"""Payload: a skillpack id whose secrets changed."""
RESERVED: Final = frozenset(
    {
        "PATH",
        "HOME",
        "TMPDIR",
        "PWD",
        "LANG",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "PYTHONHOME",
    }
)
"""Names the platform sets for every job (as are all PURAS_* names)."""


def check_name(name: str) -> str:
    """A usable secret name, or 400 saying which rule it breaks."""
    problem = None
    if len(name) > MAX_NAME_CHARS:
        problem = f"secret name is {len(name)} characters; the limit is {MAX_NAME_CHARS}"
    elif not NAME.match(name):
        problem = (
            f"secret name {name!r} must match ^[A-Z_][A-Z0-9_]*$ (an environment variable name)"
        )
    elif name.startswith("PURAS_") or name in RESERVED:
        problem = f"secret name {name!r} is reserved: the platform sets it for every job"
    if problem:
        raise ApiError(
            ErrorCode.INVALID_REQUEST, problem, details=[{"pointer": "/name", "message": problem}]
        )
    return name


def check_value(value: Any) -> str:
    """A usable secret value (the message never quotes it)."""
    if not isinstance(value, str):
        raise _invalid_value("value must be a string")
    problem = None
    if "\x00" in value:
        problem = "value must not contain NUL characters (it becomes an environment variable)"
    elif len(value.encode()) > MAX_VALUE_BYTES:
        problem = f"value is {len(value.encode())} bytes; the limit is {MAX_VALUE_BYTES}"
    if problem:
        raise _invalid_value(problem)
    return value


def _invalid_value(problem: str) -> ApiError:
    return ApiError(
        ErrorCode.INVALID_REQUEST, problem, details=[{"pointer": "/value", "message": problem}]
    )


class Secrets:
    """The secrets of every skillpack, under the platform's master keys."""

    def __init__(
        self,
        outbox: Outbox,
        keys: vault.MasterKeys,
        *,
        job_token_key: str,
        confirm: Callable[[UUID, int], Awaitable[bool]] | None = None,
    ) -> None:
        self.outbox = outbox
        self.keys = keys
        self.job_token_key = job_token_key
        self.confirm = confirm
        """Asks the scheduler whether a token's attempt is running (None: no one to ask, in
        tests of this service alone)."""
        self._data_keys: dict[UUID, tuple[str, bytes]] = {}
        """Unwrapped data keys by workspace (with the wrapping key id they were read under)."""
        self._sealed: dict[UUID, list[asyncpg.Record]] = {}
        """Sealed secret rows by skillpack, valid while :attr:`_listening`."""
        self._generation = 0
        """Counts invalidations: a read that raced one is not cached."""
        self._listening = False

    def _invalidate(self, skillpack_id: UUID | None = None) -> None:
        self._generation += 1
        if skillpack_id is None:
            self._sealed.clear()
        else:
            self._sealed.pop(skillpack_id, None)

    async def listen(self, dsn: str, *, schema: str) -> None:
        """Keep the cache honest: drop a skillpack's rows when any replica changes them."""
        attempt = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(
                    dsn, schema=schema, application_name="deployments-secrets-listener"
                )
                await conn.add_listener(
                    CHANNEL, lambda _c, _p, _ch, payload: self._invalidate(UUID(payload))
                )
                self._invalidate()  # whatever changed while we were not listening
                self._listening = True
                attempt = 0
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
            except Exception as exc:
                if not dependency_down(exc):
                    raise
                log.warning("secrets listener lost its connection", error=type(exc).__name__)
            finally:
                self._listening = False
                self._invalidate()
                if conn is not None and not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(backoff(attempt, base=0.1, cap=2.0))
            attempt += 1

    async def _changed(self, conn: asyncpg.Connection, skillpack_id: UUID) -> None:
        """In the changing transaction: every replica forgets the skillpack's rows at commit."""
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(skillpack_id))
        self._invalidate(skillpack_id)

    async def _data_key(
        self, conn: asyncpg.Connection, workspace_id: UUID, *, create: bool
    ) -> bytes | None:
        row = await conn.fetchrow(
            "SELECT key_id, wrapped FROM data_keys WHERE workspace_id = $1", workspace_id
        )
        if row is None:
            if not create:
                return None
            kid, wrapped = self.keys.wrap(workspace_id, vault.new_data_key())
            await conn.execute(
                "INSERT INTO data_keys (workspace_id, key_id, wrapped) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                workspace_id,
                kid,
                wrapped,
            )
            row = await fetch_one(
                conn, "SELECT key_id, wrapped FROM data_keys WHERE workspace_id = $1", workspace_id
            )
        cached = self._data_keys.get(workspace_id)
        if cached is not None and cached[0] == row["key_id"]:
            return cached[1]
        key = self.keys.unwrap(workspace_id, row["key_id"], row["wrapped"])
        self._data_keys[workspace_id] = (row["key_id"], key)
        return key

    async def listing(
        self, pool: asyncpg.Pool, *, workspace_id: UUID, skillpack: str
    ) -> dict[str, Any]:
        """Names and timestamps, never values."""
        pack = await skillpacks.find(pool, workspace_id, skillpacks.check_ref(skillpack))
        if pack is None:
            if skillpack == skillpacks.DEFAULT:
                return {"skillpack": skillpack, "data": []}
            pack = await skillpacks.require(pool, workspace_id, skillpack)
        rows = await pool.fetch(
            "SELECT name, created_at, updated_at FROM secrets WHERE skillpack_id = $1 ORDER BY name",
            pack["id"],
        )
        return {
            "skillpack": pack["slug"],
            "data": [
                {
                    "name": r["name"],
                    "created_at": r["created_at"].isoformat(),
                    "updated_at": r["updated_at"].isoformat(),
                }
                for r in rows
            ],
        }

    async def put(
        self, *, workspace_id: UUID, skillpack: str, name: str, value: str
    ) -> dict[str, Any]:
        """Create or overwrite a secret (the skillpack is created if it is a new slug)."""
        check_name(name)
        check_value(value)
        size = len(value.encode())
        async with self.outbox.transaction() as uow:
            pack = await skillpacks.ensure(uow.conn, workspace_id, skillpack)
            totals = await fetch_one(
                uow.conn,
                """SELECT count(*) FILTER (WHERE name <> $2) AS others,
                          coalesce(sum(value_bytes) FILTER (WHERE name <> $2), 0) AS other_bytes
                   FROM secrets WHERE skillpack_id = $1""",
                pack["id"],
                name,
            )
            _check_totals(totals["others"], totals["other_bytes"], size)
            data_key = await self._data_key(uow.conn, workspace_id, create=True)
            assert data_key is not None
            sealed = vault.seal_secret(
                data_key, workspace_id=workspace_id, skillpack_id=pack["id"], name=name, value=value
            )
            row = await fetch_one(
                uow.conn,
                """INSERT INTO secrets (skillpack_id, name, workspace_id, ciphertext, value_bytes)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (skillpack_id, name) DO UPDATE
                   SET ciphertext = excluded.ciphertext, value_bytes = excluded.value_bytes, updated_at = now()
                   RETURNING created_at, updated_at, (xmax = 0) AS created""",
                pack["id"],
                name,
                workspace_id,
                sealed,
                size,
            )
            await self._changed(uow.conn, pack["id"])
            uow.emit(
                SecretSet.new(
                    SecretSetPayload(
                        skillpack_id=pack["id"],
                        skillpack_slug=pack["slug"],
                        name=name,
                        created=row["created"],
                    ),
                    producer="deployments",
                    workspace_id=workspace_id,
                )
            )
        return {
            "name": name,
            "skillpack": pack["slug"],
            "created": row["created"],
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        }

    async def delete(self, *, workspace_id: UUID, skillpack: str, name: str) -> dict[str, Any]:
        async with self.outbox.transaction() as uow:
            pack = await skillpacks.require(uow.conn, workspace_id, skillpack, lock=True)
            deleted = await uow.conn.fetchval(
                "DELETE FROM secrets WHERE skillpack_id = $1 AND name = $2 RETURNING name",
                pack["id"],
                name,
            )
            if deleted is None:
                raise ApiError(
                    ErrorCode.NOT_FOUND, f"secret {name!r} not found in skillpack {pack['slug']!r}"
                )
            await self._changed(uow.conn, pack["id"])
            uow.emit(
                SecretDeleted.new(
                    SecretDeletedPayload(
                        skillpack_id=pack["id"], skillpack_slug=pack["slug"], name=name
                    ),
                    producer="deployments",
                    workspace_id=workspace_id,
                )
            )
        return {"name": name, "skillpack": pack["slug"], "deleted": True}

    async def _rows(self, pool: asyncpg.Pool, skillpack_id: UUID) -> list[asyncpg.Record]:
        if self._listening and (cached := self._sealed.get(skillpack_id)) is not None:
            return cached
        generation = self._generation
        rows = await pool.fetch(
            "SELECT name, workspace_id, ciphertext FROM secrets WHERE skillpack_id = $1",
            skillpack_id,
        )
        if self._listening and generation == self._generation:
            self._sealed[skillpack_id] = rows
        return rows

    async def values(self, pool: asyncpg.Pool, skillpack_id: UUID) -> dict[str, str]:
        """Every secret of a skillpack, decrypted: only for a job that runs it."""
        return await self._open(pool, skillpack_id, await self._rows(pool, skillpack_id))

    async def _open(
        self, pool: asyncpg.Pool, skillpack_id: UUID, rows: list[asyncpg.Record]
    ) -> dict[str, str]:
        if not rows:
            return {}
        workspace_id = rows[0]["workspace_id"]
        cached = self._data_keys.get(workspace_id)
        if cached is not None:
            data_key: bytes | None = cached[1]
        else:
            async with pool.acquire() as conn:
                data_key = await self._data_key(as_connection(conn), workspace_id, create=False)
        if data_key is None:
            raise vault.VaultError(f"workspace {workspace_id} has secrets but no data key")
        return {
            r["name"]: vault.open_secret(
                data_key,
                r["ciphertext"],
                workspace_id=r["workspace_id"],
                skillpack_id=skillpack_id,
                name=r["name"],
            )
            for r in rows
        }

    async def answer(self, pool: asyncpg.Pool, msg: Msg) -> None:
        """``svc.deployments.secrets``: a runner proves with the job's token which job it runs
        and gets that job's skillpack secrets, sealed to the key it sent."""
        try:
            request = orjson.loads(msg.data)
            claims = verify_job_token(
                self.job_token_key, str(request["job_token"]), audience=tokens.SECRETS
            )
            rows = await self._rows(pool, claims.skillpack_id)
            # A skillpack without secrets has nothing to guard: the token's holder learns only
            # that, and the scheduler is not asked about the attempt.
            if (
                rows
                and self.confirm is not None
                and not await self.confirm(claims.job_id, claims.attempt)
            ):
                raise TokenError(
                    f"attempt {claims.attempt} of job {claims.job_id} is not running "
                    "(the scheduler does not confirm it)"
                )
            values = await self._open(pool, claims.skillpack_id, rows)
            reply = {
                "ok": True,
                **seal(values, reply_key=str(request["reply_key"]), job_id=claims.job_id),
            }
        except TokenError as exc:
            reply = {"ok": False, "error": f"job token refused: {exc}"}
        except vault.VaultError as exc:
            log.error("secrets do not decrypt", error=str(exc))
            reply = {"ok": False, "error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            reply = {"ok": False, "error": f"malformed secrets request: {type(exc).__name__}"}
        except Exception as exc:
            if not dependency_down(exc):
                raise
            # No answer: the runner's request times out and it asks again.
            log.warning("cannot answer a secrets request now", error=type(exc).__name__)
            return
        if msg.reply:
            await msg.respond(orjson.dumps(reply))

    async def rewrap(self, pool: asyncpg.Pool) -> int:
        """Re-wrap every data key still under an earlier master key; returns how many."""
        done = 0
        current = self.keys.current_id
        rows = await pool.fetch(
            "SELECT workspace_id, key_id, wrapped FROM data_keys WHERE key_id <> $1", current
        )
        for row in rows:
            try:
                key = self.keys.unwrap(row["workspace_id"], row["key_id"], row["wrapped"])
            except vault.VaultError as exc:
                log.error(
                    "cannot re-wrap a data key",
                    workspace_id=str(row["workspace_id"]),
                    error=str(exc),
                )
                continue
            kid, wrapped = self.keys.wrap(row["workspace_id"], key)
            updated = await pool.execute(
                """UPDATE data_keys SET key_id = $3, wrapped = $4, rewrapped_at = now()
                   WHERE workspace_id = $1 AND key_id = $2""",
                row["workspace_id"],
                row["key_id"],
                kid,
                wrapped,
            )
            done += updated.endswith(" 1")
        return done


def _check_totals(others: int, other_bytes: int, size: int) -> None:
    if others + 1 > MAX_SECRETS:
        raise ApiError(
            ErrorCode.CONFLICT,
            f"skillpack already has {others} secrets; the limit is {MAX_SECRETS}",
        )
    if other_bytes + size > MAX_TOTAL_BYTES:
        raise ApiError(
            ErrorCode.CONFLICT,
            f"the skillpack's secrets would total {other_bytes + size} bytes; the limit is {MAX_TOTAL_BYTES}",
        )
