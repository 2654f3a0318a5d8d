"""The lifecycle every service process shares, as one async context manager.

wait for the bus and the database → create streams → migrate → start the outbox relay →
answer ``svc.<service>.health`` → run the service's tasks → on SIGTERM/SIGINT stop them, flush
and close. A task that dies stops the whole process (crash-only: the supervisor restarts it), so
a half-working service never lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import asyncpg
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from puras_common import subjects
from puras_common.access import schema_name
from puras_common.bus import connect_nats
from puras_common.db import connect, create_pool
from puras_common.logging import configure_logging, get_logger
from puras_common.migrate import MigrationSource, common_migrations, migrate
from puras_common.outbox import Outbox, OutboxRelay
from puras_common.settings import ServiceSettings
from puras_common.streams import ensure_streams

HealthCheck = Callable[[], Awaitable[dict[str, Any]] | dict[str, Any]]


class ServiceRuntime:
    """Connections and tasks of one service process."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        migrations: MigrationSource | None = None,
        pool_size: int = 10,
    ) -> None:
        self.settings = settings
        self.name = settings.service
        self.schema = schema_name(settings.service)
        self.migrations = migrations
        self.pool_size = pool_size
        self.log = get_logger(self.name)
        self.nc: NATS
        self.js: JetStreamContext
        self.pool: asyncpg.Pool | None = None
        self.outbox: Outbox | None = None
        self.relay: OutboxRelay | None = None
        self.checks: dict[str, HealthCheck] = {}
        self.started_at = datetime.now(UTC)
        self._tasks: dict[asyncio.Task[Any], str] = {}
        self._stop = asyncio.Event()
        self._failure: BaseException | None = None

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError(f"{self.name} has no database")
        return self.pool

    @property
    def stateful(self) -> bool:
        return self.migrations is not None

    async def __aenter__(self) -> Self:
        s = self.settings
        configure_logging(self.name, level=s.log_level, fmt=s.log_format)
        t0 = time.monotonic()
        self.nc = await connect_nats(s.nats_url, name=f"{self.name}@{s.instance_id}")
        self.js = self.nc.jetstream(publish_async_max_pending=8192)
        await ensure_streams(self.js, replicas=s.stream_replicas)
        if self.migrations is not None:
            dsn = s.require_database_url()
            self.pool = await create_pool(
                dsn, schema=self.schema, application_name=self.name, max_size=self.pool_size
            )
            conn = await connect(dsn, schema=self.schema, application_name=f"{self.name}-migrate")
            try:
                applied = await migrate(conn, schema=self.schema, sources=[common_migrations(), self.migrations])
            finally:
                await conn.close()
            if applied:
                self.log.info("migrated", applied=applied)
            self.outbox = Outbox(self.pool, schema=self.schema)
            self.relay = OutboxRelay(self.outbox, self.js, dsn=dsn)
            self.spawn(self.relay.run(), "outbox-relay")
            self.checks["database"] = self._check_database
        await self.nc.subscribe(subjects.svc(self.name, "health"), cb=self._answer_health)
        self.log.info("connected", seconds=round(time.monotonic() - t0, 3), pid=os.getpid())
        return self

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` for the life of the service; if it ends or fails, the service stops."""
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self._tasks[task] = name
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        name = self._tasks.pop(task, "?")
        if task.cancelled() or self._stop.is_set():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("task failed; stopping", task=name, error=repr(exc), exc_info=exc)
            self._failure = exc
        else:
            self.log.error("task ended unexpectedly; stopping", task=name)
            self._failure = RuntimeError(f"task {name} ended")
        self._stop.set()

    def stop(self) -> None:
        """Ask the service to shut down."""
        self._stop.set()

    async def run_until_stopped(self) -> None:
        """Block until SIGTERM/SIGINT or a failed task; re-raise the failure if any."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        self.log.info("ready")
        await self._stop.wait()
        if self._failure is not None:
            raise self._failure

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.drain(), 5)
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 5)
        self.log.info("stopped")

    async def _check_database(self) -> dict[str, Any]:
        await self.db.fetchval("SELECT 1")
        return {"ok": True}

    async def health(self) -> dict[str, Any]:
        """This instance's health: every registered check, plus the bus."""
        results: dict[str, Any] = {"nats": {"ok": self.nc.is_connected}}
        for name, check in self.checks.items():
            try:
                value = check()
                results[name] = await value if asyncio.iscoroutine(value) else value
            except Exception as exc:  # a health check reports failures, it does not raise them
                results[name] = {"ok": False, "error": repr(exc)}
        ok = all(bool(r.get("ok", True)) for r in results.values())
        return {
            "service": self.name,
            "instance": self.settings.instance_id,
            "status": "ok" if ok else "degraded",
            "started_at": self.started_at.isoformat(),
            "checks": results,
        }

    async def _answer_health(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(orjson.dumps(await self.health()))


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a service's async main on uvloop (when installed); exit non-zero on failure."""
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
