"""PostgreSQL access: one asyncpg pool per service, pinned to the service's own schema."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, cast

import asyncpg
import orjson

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

from puras_common.errors import backoff


def _encode_json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=_encode_json, decoder=orjson.loads, format="text"
        )


def as_connection(pooled: PoolConnectionProxy[asyncpg.Record]) -> asyncpg.Connection:
    """A connection acquired from a pool, where a connection is expected. asyncpg's proxy
    forwards every method to the connection it holds and passes ``isinstance(…, Connection)``;
    only the type stubs keep the two apart."""
    return cast(asyncpg.Connection, pooled)


class RowMissing(RuntimeError):
    """A statement that always returns a row returned none: a bug, not bad input."""

    def __init__(self, query: str) -> None:
        super().__init__(f"expected a row from: {' '.join(query.split())[:200]}")
        self.query = query


async def fetch_one(
    conn: asyncpg.Connection | asyncpg.Pool, query: str, *args: object
) -> asyncpg.Record:
    """The row of a statement that always returns one: an aggregate, an ``INSERT … RETURNING``,
    a row the caller's transaction holds."""
    row = await conn.fetchrow(query, *args)
    if row is None:
        raise RowMissing(query)
    return row


class DatabaseUnavailable(RuntimeError):
    """The database did not accept a connection within the wait."""


async def create_pool(
    dsn: str,
    *,
    schema: str,
    application_name: str,
    min_size: int = 2,
    max_size: int = 10,
    wait_seconds: float = 30.0,
) -> asyncpg.Pool:
    """A pool whose connections see ``schema`` first, decode json/jsonb, and that waits for the
    server to come up (``wait → migrate → serve``)."""
    deadline = time.monotonic() + wait_seconds
    attempt = 0
    while True:
        try:
            return await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                reset=_no_session_state,
                server_settings={"search_path": schema, "application_name": application_name},
            )
        except (OSError, asyncpg.exceptions.CannotConnectNowError) as exc:
            if time.monotonic() > deadline:
                raise DatabaseUnavailable(
                    f"no database at {_redact(dsn)} after {wait_seconds:.0f}s: {exc}"
                ) from exc
            await asyncio.sleep(backoff(attempt, base=0.1, cap=1.0))
            attempt += 1


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Pooled connections carry no session state to undo: LISTEN, advisory locks and
    migrations use connections of their own (:func:`connect`). So a release costs no round
    trip (asyncpg's default runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    on every one); an open transaction is still rolled back by asyncpg itself."""


async def connect(dsn: str, *, schema: str, application_name: str) -> asyncpg.Connection:
    """A single connection configured like a pool's (for listeners and leader locks)."""
    conn = await asyncpg.connect(
        dsn, server_settings={"search_path": schema, "application_name": application_name}
    )
    await _init_connection(conn)
    return conn


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
