"""Errors worth retrying: the named transient failures of the database and the bus.

Everything else is a bug or bad data, and retrying it would only repeat it.
"""

from __future__ import annotations

import asyncio

import asyncpg
import nats.errors

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.AdminShutdownError,
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,
    asyncio.TimeoutError,
    ConnectionError,
)
"""Failures that a later attempt can get past."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is one of :data:`TRANSIENT_ERRORS`."""
    return isinstance(exc, TRANSIENT_ERRORS)


def backoff(attempt: int, *, base: float = 0.05, cap: float = 5.0) -> float:
    """Exponential backoff: 50 ms, 100 ms, 200 ms … capped at ``cap`` seconds."""
    return min(cap, base * 2.0 ** max(0, attempt))


PLATFORM_RETRY_SECONDS = 30.0
"""How long a call to another service of the platform is retried before the work that needs it
fails: longer than a service's restart in a rolling upgrade, so an upgrade fails no job."""
