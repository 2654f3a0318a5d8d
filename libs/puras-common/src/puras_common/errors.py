"""Errors worth retrying: the named transient failures of the database and the bus.

Everything else is a bug or bad data, and retrying it would only repeat it. A dependency that
is away (:func:`dependency_down`: the named failures, and what else PostgreSQL or the network
say when a server is gone) is waited out by every loop that needs it, never counted as a
failure of the work.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from pathlib import PurePath
from typing import Final, TypeVar

import asyncpg
import nats.errors

from puras_common.logging import get_logger

log = get_logger("puras_common.errors")

T = TypeVar("T")

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


_NETWORK_ERRNOS: Final = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EADDRNOTAVAIL,
    }
)


def dependency_down(exc: BaseException) -> bool:
    """Whether ``exc`` says PostgreSQL or NATS is away, rather than that the request is wrong:
    the named transient errors (a refused or reset connection among them), a socket error of
    the network kind, PostgreSQL's connection (08xxx) and shutdown or crash-recovery (57Pxx)
    states, and a failure of the driver's own code that is no PostgreSQL error; looked for in
    ``exc``, what it was explicitly raised from, and an exception group's members (a request
    that asked two things at once)."""
    if is_transient(exc):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        # asyncio's "Multiple exceptions: …" when every address refused has no errno of its own.
        if exc.errno in _NETWORK_ERRNOS or (
            exc.errno is None and "Connect call failed" in str(exc)
        ):
            return True
    if isinstance(exc, asyncpg.PostgresError):
        # PostgreSQL's answer (or the driver's, refusing a query's arguments) says what it is;
        # what it was raised from (an OverflowError in an encoder, say) does not overrule it.
        state = getattr(exc, "sqlstate", None)
        return isinstance(state, str) and (state.startswith("08") or state.startswith("57P"))
    if _raised_in_asyncpg(exc):
        # The driver's own failure, not PostgreSQL's answer to the query: a connection that
        # broke under it (a server killed mid-query can leave it half torn down).
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(dependency_down(e) for e in exc.exceptions)
    return exc.__cause__ is not None and dependency_down(exc.__cause__)


def _raised_in_asyncpg(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is the PostgreSQL driver's code: its
    Python modules by their installed path, its compiled protocol by the package-relative name
    Cython gives its frames (``asyncpg/protocol/coreproto.pyx``)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return "asyncpg" in PurePath(tb.tb_frame.f_code.co_filename).parts


async def while_away(step: Callable[[], Awaitable[T]], *, what: str) -> T:
    """``step()``, tried again for as long as it fails because PostgreSQL or NATS is away (see
    :func:`dependency_down`), with backoff up to 5 s; any other failure is raised. For a
    service's background loops: a database restarting must not stop the service."""
    attempt = 0
    while True:
        try:
            return await step()
        except Exception as exc:
            if not dependency_down(exc):
                raise
            delay = backoff(attempt, base=0.1, cap=5.0)
            if attempt % 10 == 0:
                log.warning("a dependency is away; trying again", what=what, error=repr(exc)[:300])
            await asyncio.sleep(delay)
            attempt += 1
