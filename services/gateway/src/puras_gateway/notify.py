"""Waiting on read-model changes: one LISTEN connection per process, fanned out in memory.

Projections ``NOTIFY`` in the transaction that changes a row, so a waiter that looks at the row
after being woken sees the change. Waiters register before they look, so nothing slips between.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import asyncpg
from puras_common.db import connect
from puras_common.errors import backoff, dependency_down
from puras_common.logging import get_logger
from puras_common.waits import woken

log = get_logger("puras_gateway.notify")

T = TypeVar("T")

JOBS_CHANNEL = "puras_gateway_jobs"
"""Payload: a job id whose row reached a terminal status."""
CATALOG_CHANNEL = "puras_gateway_catalog"
"""Payload: a deployment id whose catalogue rows changed."""
PROJECTED = "projected"
"""Not a database channel: this process's projection committed events of the job (key) that
a client was shown before (:meth:`Notifier.wake` only)."""


class Notifier:
    def __init__(self, dsn: str, *, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)
        self._callbacks: dict[str, list[Callable[[], None]]] = {}
        self.connected = asyncio.Event()

    @contextlib.contextmanager
    def watch(self, channel: str, key: str) -> Iterator[asyncio.Event]:
        """An event set when ``key`` is notified on ``channel`` (or when the listener reconnects)."""
        event = asyncio.Event()
        self._waiters[(channel, key)].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get((channel, key))
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[(channel, key)]

    async def wait_until(
        self,
        channel: str,
        key: str,
        probe: Callable[[], Awaitable[T | None]],
        *,
        timeout: float,
        recheck_seconds: float = 1.0,
    ) -> T | None:
        """Call ``probe`` now and after each notification of ``key`` (or every
        ``recheck_seconds``) until it returns something; None once ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self.watch(channel, key) as changed:
            while True:
                changed.clear()
                found = await probe()
                remaining = deadline - loop.time()
                if found is not None or remaining <= 0:
                    return found
                await woken(changed, min(remaining, recheck_seconds))

    def on_channel(self, channel: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` on every notification on ``channel`` (and after a reconnect, when
        notifications may have been missed)."""
        self._callbacks.setdefault(channel, []).append(callback)

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        for callback in self._callbacks.get(channel, ()):
            callback()
        # A NOTIFY payload is text; the driver's callback type is wider.
        self.wake(channel, str(payload))

    def wake(self, channel: str, key: str) -> None:
        """Wake the waiters of ``key`` as its notification would: for a change this process
        committed itself, whose notification has still to come back from the database."""
        for event in self._waiters.get((channel, key), ()):
            event.set()

    def _wake_all(self) -> None:
        for callbacks in self._callbacks.values():
            for callback in callbacks:
                callback()
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def run(self) -> None:
        attempt = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(
                    self.dsn, schema=self.schema, application_name="gateway-listener"
                )
                for channel in (JOBS_CHANNEL, CATALOG_CHANNEL):
                    await conn.add_listener(channel, self._on_notify)
                self.connected.set()
                # Anything notified while we were away is re-checked by its waiter.
                self._wake_all()
                attempt = 0
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
            except Exception as exc:
                if not dependency_down(exc):
                    raise
                log.warning("listener lost its connection", error=repr(exc))
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(backoff(attempt, base=0.1, cap=2.0))
            attempt += 1
