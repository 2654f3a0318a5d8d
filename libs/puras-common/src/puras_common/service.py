"""The lifecycle every service process shares, as one async context manager.

wait for the bus and the database (streams and consumers are provisioned beforehand) → migrate → start the outbox relay →
answer ``svc.<service>.health`` → run the service's tasks → once ready, freeze the heap the
start built (:func:`settle_heap`) → on SIGTERM/SIGINT drain (runners
take no new work and finish what they hold, within ``drain_seconds``), stop the tasks, flush
and close. A task that dies stops the whole process (crash-only: the supervisor restarts it), so
a half-working service never lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
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

from puras_common import observability, subjects
from puras_common.access import inbox_prefix, schema_name
from puras_common.bus import (
    ConsumerSpec,
    Holdings,
    JetStream,
    Work,
    WorkRunner,
    connect_nats,
    jetstream,
)
from puras_common.db import connect, create_pool
from puras_common.logging import configure_logging, get_logger
from puras_common.migrate import MigrationSource, common_migrations, migrate
from puras_common.outbox import Outbox, OutboxRelay
from puras_common.settings import ServiceSettings

HealthCheck = Callable[[], Awaitable[dict[str, Any]] | dict[str, Any]]

GC_THRESHOLDS = (7_000, 10, 100)
"""The collector's thresholds once a service runs (Python's own are 700, 10, 10): a young
collection every 7,000 tracked objects allocated and not freed, a middle one every 10 of those,
a full one at most every 100 middle ones (and, as always, only once the objects that outlived
the middle generation have grown by a quarter). The bound this puts on garbage: a cycle of
objects that outlived two collections before they died waits for the next full collection,
which at most 7M such allocations bring."""


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
        self.js: JetStream
        self.pool: asyncpg.Pool | None = None
        self.outbox: Outbox | None = None
        self.relay: OutboxRelay | None = None
        self.checks: dict[str, HealthCheck] = {}
        self.started_at = datetime.now(UTC)
        self._tasks: dict[asyncio.Task[Any], str] = {}
        self.holdings = Holdings()
        """Jobs this process's work runners hold (answered on ``svc.<service>.holds``)."""
        self.work_runners: list[WorkRunner] = []
        self.draining = False
        self.ops_port: int | None = None
        """Where the ops listener listens, once started."""
        self._ops: asyncio.base_events.Server | None = None
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
        observability.setup_tracing(self.name)
        t0 = time.monotonic()
        self.nc = await connect_nats(
            s.nats_url, name=f"{self.name}@{s.instance_id}", inbox_prefix=inbox_prefix(self.name)
        )
        self.js = jetstream(self.nc, publish_async_max_pending=8192)
        if self.migrations is not None:
            dsn = s.require_database_url()
            self.pool = await create_pool(
                dsn, schema=self.schema, application_name=self.name, max_size=self.pool_size
            )
            conn = await connect(dsn, schema=self.schema, application_name=f"{self.name}-migrate")
            try:
                applied = await migrate(
                    conn, schema=self.schema, sources=[common_migrations(), self.migrations]
                )
            finally:
                await conn.close()
            if applied:
                self.log.info("migrated", applied=applied)
            self.outbox = Outbox(self.pool, schema=self.schema)
            self.relay = OutboxRelay(self.outbox, self.js, dsn=dsn)
            self.spawn(self.relay.run(), "outbox-relay")
            self.checks["database"] = self._check_database
        await self.nc.subscribe(subjects.svc(self.name, "health"), cb=self._answer_health)
        await self.holdings.serve(self.nc, service=self.name, instance=s.instance_id)
        self.spawn(observability.watch_consumers(self.js), "consumer-lag")
        if s.ops_port is not None:
            try:
                await self._serve_ops(s.ops_host, s.ops_port)
            except OSError as exc:
                # Metrics and probes lost are better than the service itself crash-looping.
                self.log.error(
                    "ops listener could not listen",
                    host=s.ops_host,
                    port=s.ops_port,
                    error=repr(exc),
                )
        observability.UP.labels(self.name).set(1)
        self.log.info("connected", seconds=round(time.monotonic() - t0, 3), pid=os.getpid())
        return self

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` for the life of the service; if it ends or fails, the service stops."""
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self._tasks[task] = name
        task.add_done_callback(self._task_done)
        return task

    def run_work(self, *, spec: ConsumerSpec, work: Work, concurrency: int) -> WorkRunner:
        """Take work from ``spec`` for the life of the service, drained on a graceful stop."""
        runner = WorkRunner(
            js=self.js, spec=spec, work=work, concurrency=concurrency, holdings=self.holdings
        )
        self.work_runners.append(runner)
        self.spawn(runner.run(), spec.durable)
        return runner

    async def drain(self) -> None:
        """Finish the work in flight (taking no more) within ``drain_seconds``."""
        self.draining = True
        observability.UP.labels(self.name).set(0)
        if not self.work_runners:
            return
        held = sum(len(r.active) for r in self.work_runners)
        self.log.info("draining", jobs=held, grace_seconds=self.settings.drain_seconds)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(r.drain() for r in self.work_runners)),
                self.settings.drain_seconds,
            )
        except TimeoutError:
            left = sum(len(r.active) for r in self.work_runners)
            self.log.warning("drain grace ran out; abandoning work", jobs=left)
        else:
            self.log.info("drained", jobs=held)

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
        """Block until SIGTERM/SIGINT or a failed task; re-raise the failure if any, else drain
        (before the service closes what its work needs)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        settle_heap()
        self.log.info("ready")
        await self._stop.wait()
        if self._failure is not None:
            raise self._failure
        await self.drain()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        observability.UP.labels(self.name).set(0)
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
        if self._ops is not None:
            self._ops.close()
        observability.shutdown_tracing()
        self.log.info("stopped")

    # -- the ops listener: what an orchestrator and Prometheus ask

    async def ready(self) -> bool:
        """Connected, migrated, not draining: this instance may be sent work and traffic."""
        if self.draining or self._stop.is_set() or not self.nc.is_connected:
            return False
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.db.fetchval("SELECT 1"), 2)
            except Exception:  # not ready is the answer, whatever went wrong
                return False
        return True

    async def _serve_ops(self, host: str, port: int) -> None:
        self._ops = await asyncio.start_server(self._answer_ops, host, port)
        self.ops_port = self._ops.sockets[0].getsockname()[1]
        self.log.info("ops listener", host=host, port=self.ops_port)

    async def _answer_ops(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = request.split(b" ", 2)[1].split(b"?")[0].decode("ascii", "replace")
            status, body, ctype = await self._ops_page(path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError):
            pass  # a malformed or abandoned request gets nothing more
        finally:
            writer.close()

    async def _ops_page(self, path: str) -> tuple[str, bytes, str]:
        if path == "/metrics":
            body, ctype = observability.render()
            return "200 OK", body, ctype
        if path == "/livez":
            return "200 OK", b'{"status":"ok"}', "application/json"
        if path == "/readyz":
            ok = await self.ready()
            body = orjson.dumps(
                {"status": "ok" if ok else "unavailable", "draining": self.draining}
            )
            return ("200 OK" if ok else "503 Service Unavailable"), body, "application/json"
        if path == "/healthz":
            return "200 OK", orjson.dumps(await self.health()), "application/json"
        return "404 Not Found", b'{"error":"no such page"}', "application/json"

    async def _check_database(self) -> dict[str, Any]:
        await self.db.fetchval("SELECT 1")
        return {"ok": True}

    async def health(self) -> dict[str, Any]:
        """This instance's health: every registered check, plus the bus."""
        results: dict[str, Any] = {"nats": {"ok": self.nc.is_connected}}
        # A copy: the service may register a check while one of these awaits (the gateway
        # adds its own once started, and health is asked for from the first moment).
        for name, check in list(self.checks.items()):
            try:
                value = check()
                results[name] = await value if asyncio.iscoroutine(value) else value
            except Exception as exc:  # a health check reports failures, it does not raise them
                results[name] = {"ok": False, "error": repr(exc)}
        ok = all(bool(r.get("ok", True)) for r in results.values())
        return {
            "service": self.name,
            "instance": self.settings.instance_id,
            "ops_port": self.ops_port,
            "draining": self.draining,
            "status": "ok" if ok else "degraded",
            "started_at": self.started_at.isoformat(),
            "checks": results,
            "stats": observability.snapshot(),
        }

    async def _answer_health(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(orjson.dumps(await self.health()))


async def instances_health(nc: NATS, service: str, *, wait: float = 0.3) -> list[dict[str, Any]]:
    """The health of every running instance of ``service`` (each answers the request; all
    answers within ``wait`` seconds are kept)."""
    inbox = nc.new_inbox()
    answers: list[dict[str, Any]] = []

    async def collect(msg: Msg) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            answers.append(orjson.loads(msg.data))

    sub = await nc.subscribe(inbox, cb=collect)
    try:
        await nc.publish(subjects.svc(service, "health"), b"", reply=inbox)
        await nc.flush()
        await asyncio.sleep(wait)
    finally:
        await sub.unsubscribe()
    return sorted(answers, key=lambda a: str(a.get("instance", "")))


def settle_heap() -> None:
    """Collect what the service's start left as garbage, freeze what survives, and space the
    collector's passes out (:data:`GC_THRESHOLDS`).

    A started service holds a large heap for as long as it runs (its modules, schemas, routes,
    pools and clients: 130,000 objects in the gateway), and Python's collector walks all of it on
    every full collection, which it makes whenever the objects that outlived its middle
    generation have grown by a quarter since the last. Holding 10,000 SSE streams, a gateway so
    made 15 full collections that took 7.9 s together, the longest 1.7 s in which no frame went
    out. Frozen, the start's objects are never walked again; what is frozen is all reachable
    (the collection before the freeze took the rest), so nothing is kept that could have been
    freed, short of an object of the start that becomes part of a cycle and dies later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a service's async main on uvloop (when installed); exit non-zero on failure."""
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
