"""What the API answers 503 (retry shortly) rather than 500, and what a background loop waits
out: a dependency away, however the error reaches the handler; a bug stays a 500."""

from __future__ import annotations

import asyncio
import errno

import asyncpg
import pytest
from puras_common.errors import dependency_down, while_away
from puras_testing import Scratch
from puras_testing.links import cuttable_link, pool_through


def raised_from(cause: BaseException) -> RuntimeError:
    try:
        raise RuntimeError("the query failed") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 5432)"),
        OSError("Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 5432)"),
        OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        ExceptionGroup("two reads", [ValueError("fine"), ConnectionResetError()]),
        raised_from(asyncpg.exceptions.AdminShutdownError("terminating connection")),
    ],
    ids=["refused", "every-address", "no-address", "closed", "starting", "group", "cause"],
)
def test_a_dependency_away_is_unavailable(exc: BaseException) -> None:
    assert dependency_down(exc)


def refused_argument() -> asyncpg.exceptions.DataError:
    """What asyncpg raises for a number out of a bigint's range: its encoder's OverflowError,
    in a compiled frame, wrapped in a DataError (a client-side bug, not the database away)."""
    encoder = compile(
        "raise OverflowError('value out of int64 range')", "asyncpg/protocol/codecs/int.pyx", "exec"
    )
    try:
        try:
            exec(encoder)
        except OverflowError as exc:
            raise asyncpg.exceptions.DataError(
                "invalid input for query argument $2: 100000000000000000000 (value out of int64 "
                "range)"
            ) from exc
    except asyncpg.exceptions.DataError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "exc",
    [
        KeyError("status"),
        FileNotFoundError(errno.ENOENT, "No such file or directory"),
        OSError(errno.ENOSPC, "No space left on device"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        ExceptionGroup("two reads", [ValueError("a bug")]),
        raised_from(KeyError("a bug")),
        refused_argument(),
    ],
    ids=["key", "file", "disk", "unique", "group", "cause", "argument"],
)
def test_a_bug_is_not(exc: BaseException) -> None:
    assert not dependency_down(exc)


async def test_the_drivers_own_failure_mid_query_is_a_dependency_away() -> None:
    """A PostgreSQL killed mid-query can leave asyncpg's connection half torn down, and the
    driver then fails with an error of its own (an AttributeError inside the pool, say): that
    is the database being away, not a bug of the request. The same error raised by our own
    code stays a 500."""
    try:
        await asyncpg.pool.Pool.fetchrow(None, "SELECT 1")  # type: ignore[arg-type]
    except AttributeError as exc:
        inside_the_driver = exc
    assert dependency_down(inside_the_driver)
    assert dependency_down(raised_from(inside_the_driver))
    try:
        None.acquire  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        ours = exc
    assert not dependency_down(ours)
    assert not dependency_down(asyncpg.exceptions.UniqueViolationError("duplicate key"))


def test_a_failure_inside_the_drivers_compiled_protocol_is_a_dependency_away() -> None:
    """With the server killed under a busy pool, the compiled protocol can fail with "cannot
    switch to state 12; another operation (2) is in progress". Cython names such a frame by
    the package-relative path of its source, with no installed prefix; a frame of that name
    is made here the way Cython makes it."""
    protocol = compile(
        "raise asyncpg.exceptions.InternalClientError("
        "'cannot switch to state 12; another operation (2) is in progress')",
        "asyncpg/protocol/coreproto.pyx",
        "exec",
    )
    try:
        exec(protocol, {"asyncpg": asyncpg})
    except asyncpg.exceptions.InternalClientError as exc:
        inside_the_protocol = exc
    assert dependency_down(inside_the_protocol)
    try:
        exec(compile("raise ValueError('ours')", "puras_gateway/asyncpg_rows.py", "exec"))
    except ValueError as exc:
        ours = exc
    assert not dependency_down(ours)


async def test_a_loop_step_waits_out_a_database_away_and_raises_anything_else(
    scratch: Scratch,
) -> None:
    """A service's background loop takes PostgreSQL going away for a while (its connections
    reset, new ones refused) as something to wait out, not a reason to stop the service; a
    query that is wrong is raised at once."""
    async with (
        cuttable_link(scratch.dsn) as link,
        pool_through(link, scratch.dsn, schema=scratch.schema) as pool,
    ):
        assert await pool.fetchval("SELECT 1") == 1  # a connection open when it goes away
        await link.cut()
        step = asyncio.create_task(
            while_away(lambda: pool.fetchval("SELECT 41 + 1"), what="a test's step")
        )
        done, _ = await asyncio.wait({step}, timeout=1.5)
        assert not done, step.result() if done else None
        await link.restore()
        assert await asyncio.wait_for(step, 15) == 42
        with pytest.raises(asyncpg.exceptions.PostgresSyntaxError):
            await while_away(lambda: pool.fetchval("SELEC 1"), what="a test's step")
