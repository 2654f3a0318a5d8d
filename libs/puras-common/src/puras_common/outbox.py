"""The transactional outbox: a state change and the events describing it commit together.

A :class:`UnitOfWork` is one PostgreSQL transaction; events emitted in it are inserted into the
service's append-only ``outbox`` table just before commit. The :class:`OutboxRelay` publishes
committed rows to JetStream in order, with ``Nats-Msg-Id`` = event id, retrying until acked, and
remembers how far it got in ``outbox_cursor``. If the process dies between commit and publish,
the next relay (after restart, or another replica taking over the leader lock) publishes what
is left; the server's duplicate window and the consumers' inbox absorb any re-publish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from nats.js import JetStreamContext

from puras_common import observability
from puras_common.db import as_connection, connect
from puras_common.envelope import Event
from puras_common.errors import while_away
from puras_common.logging import get_logger
from puras_common.publishing import Outgoing, publish_acknowledged
from puras_common.waits import woken

log = get_logger("puras_common.outbox")

_INSERT = """
WITH rows AS (
    INSERT INTO outbox (event_id, type, subject, body)
    SELECT e.id, e.type, e.subject, e.body::jsonb
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS e(id, type, subject, body)
    RETURNING 1
)
SELECT pg_notify($5, '') FROM (SELECT 1 FROM rows LIMIT 1) AS any_row
"""


@dataclass
class UnitOfWork:
    """One transaction: the connection to write state with, and the events to emit."""

    conn: asyncpg.Connection
    events: list[Event] = field(default_factory=list)

    def emit(self, *events: Event) -> None:
        """Queue events; they are written to the outbox in this transaction, in this order."""
        self.events.extend(events)


class Outbox:
    """The writing side of one service's outbox."""

    def __init__(self, pool: asyncpg.Pool, *, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        self.channel = f"puras_outbox_{schema}"
        self.committed = asyncio.Event()
        """Set after a local commit with events, so the local relay wakes without a round trip."""

    @contextlib.asynccontextmanager
    async def transaction(
        self, conn: asyncpg.Connection | None = None
    ) -> AsyncIterator[UnitOfWork]:
        """Open a transaction; events emitted in it are committed with it, or not at all."""
        if conn is not None:
            async with conn.transaction():
                uow = UnitOfWork(conn)
                yield uow
                await self.write(conn, uow.events)
        else:
            async with self.pool.acquire() as acquired, acquired.transaction():
                uow = UnitOfWork(as_connection(acquired))
                yield uow
                await self.write(uow.conn, uow.events)
        if uow.events:
            self.committed.set()

    async def write(self, conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        """Insert events into the outbox on ``conn`` (which must be inside a transaction)."""
        if not events:
            return
        await conn.execute(
            _INSERT,
            [e.id for e in events],
            [e.type for e in events],
            [e.subject for e in events],
            [e.to_json().decode() for e in events],
            self.channel,
        )


# ORDER BY names the table's columns: a bare ``tx_id`` would be the text alias of the select
# list, and "10000" sorts before "9999", which would move the cursor past rows not yet published.
_FETCH = """
SELECT seq, tx_id::text AS tx_id, event_id, subject, body::text AS body,
       tx_id < pg_snapshot_xmin(pg_current_snapshot()) AS final
FROM outbox
WHERE (outbox.tx_id, outbox.seq) > ($1::text::xid8, $2)
ORDER BY outbox.tx_id, outbox.seq
LIMIT $3
"""


_BACKLOG = """
SELECT count(*) FROM outbox WHERE (outbox.tx_id, outbox.seq) > ($1::text::xid8, $2)
"""

_HEAD_FINAL = """
SELECT tx_id < pg_snapshot_xmin(pg_current_snapshot()) FROM outbox
WHERE (outbox.tx_id, outbox.seq) > ($1::text::xid8, $2)
ORDER BY outbox.tx_id, outbox.seq
LIMIT 1
"""
"""Whether the first row not yet published is final: one index entry, not a batch of rows."""


def _headers(row: Any) -> dict[str, str]:
    """A row's publish headers: its event id and, when tracing, its job's ``traceparent``."""
    job_id = None
    if observability.tracing():
        subject: str = row["subject"]
        if subject.startswith("job."):
            job_id = subject.split(".", 2)[1]
        else:
            job_id = orjson.loads(row["body"]).get("job_id")
    return observability.publish_headers(row["event_id"], job_id, row["subject"])


class OutboxRelay:
    """Publishes one service's committed outbox rows to JetStream, in order, exactly once.

    One relay per service is active at a time (a PostgreSQL advisory lock held on a dedicated
    connection); the others wait to take over.
    """

    def __init__(
        self,
        outbox: Outbox,
        js: JetStreamContext,
        *,
        dsn: str,
        batch: int = 512,
        idle_poll_seconds: float = 1.0,
        persist_every: int = 2048,
        persist_idle_seconds: float = 1.0,
        ack_timeout: float = 5.0,
        held_warning_seconds: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self.js = js
        self.dsn = dsn
        self.batch = batch
        self.idle_poll_seconds = idle_poll_seconds
        self.persist_every = persist_every
        self.persist_idle_seconds = persist_idle_seconds
        """When idle, the cursor is written at most this often: every write is a commit, with its
        fsync, and a relay under a trickle of jobs goes idle after nearly every publish. A crash
        re-publishes what came after the cursor, and the server's duplicate window drops it."""
        self._persisted_at = float("-inf")
        self.ack_timeout = ack_timeout
        self.held_warning_seconds = held_warning_seconds
        """A row held back this long is logged as a warning (again each such period)."""
        self.held_since: float | None = None
        """Since when the next row has waited for an older open transaction, with nothing
        published meanwhile; None while no row waits."""
        self._held_from = 0
        self._held_warned = 0.0
        self._held_gauge = observability.OUTBOX_HELD_SECONDS.labels(outbox.schema)
        self.name = f"{outbox.schema}-relay"
        self.published = 0
        self.rows_read = 0
        """Outbox rows fetched, published or not yet final."""
        self.replayed = 0
        """Rows the server already held when this relay took the lead: published by the relay
        before it, after the cursor that relay last persisted (a batch in flight as it stopped)."""
        self.duplicates = 0
        """Rows the server already held at any other time."""
        self._replaying = False
        self._cursor: tuple[str, int] = ("0", 0)
        self._unpersisted = 0
        self._held = False
        """Whether the first committed row not yet published was not final at the last look."""
        self._lag_measured = 0.0
        self.leader = asyncio.Event()

    async def run(self) -> None:
        """Lead when the lock is free, publish until cancelled; lead again on a new connection
        while PostgreSQL or NATS is away (a server killed under the relay can leave its
        connection half torn down: :func:`~puras_common.errors.dependency_down` says so too)."""
        await while_away(self._lead, what=self.name)

    async def _lead(self) -> None:
        conn = await connect(self.dsn, schema=self.outbox.schema, application_name=self.name)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self.name):
                await asyncio.sleep(1.0)
            self.leader.set()
            self._held = False
            self._replaying = True
            wake = self.outbox.committed
            await conn.add_listener(self.outbox.channel, lambda *_: wake.set())
            row = await conn.fetchrow(
                "SELECT tx_id::text, seq FROM outbox_cursor WHERE relay = $1", self.name
            )
            self._cursor = (row["tx_id"], row["seq"]) if row else ("0", 0)
            log.info("outbox relay leading", relay=self.name, cursor=self._cursor)
            while True:
                wake.clear()
                more = await self._drain_once(conn)
                self._note_held(more == "pending")
                if more == "rows":
                    continue
                if more == "pending":
                    # Committed rows exist but an older transaction is still open somewhere:
                    # look again very soon rather than wait for the next notification.
                    await woken(wake, 0.002)
                    continue
                if (
                    asyncio.get_running_loop().time() - self._persisted_at
                    >= self.persist_idle_seconds
                ):
                    await self._persist(conn)
                observability.OUTBOX_LAG_ROWS.labels(self.outbox.schema).set(0)
                await woken(wake, self.idle_poll_seconds)
        finally:
            self.leader.clear()
            with contextlib.suppress(Exception):
                await self._persist(conn)
            await conn.close()

    def _note_held(self, held: bool) -> None:
        """Track how long rows have waited for an older open transaction. The relay publishes a
        row only once every older transaction in the database has ended, so one left open
        anywhere (a session idle in a transaction, say) holds back every service's events:
        warn, and show it as ``puras_outbox_held_seconds``."""
        if not held:
            if self.held_since is not None:
                self.held_since = None
                self._held_gauge.set(0)
            return
        now = asyncio.get_running_loop().time()
        if self.held_since is None or self.published != self._held_from:
            self.held_since, self._held_from, self._held_warned = now, self.published, now
            self._held_gauge.set(0)
            return
        waited = now - self.held_since
        self._held_gauge.set(waited)
        if now - self._held_warned >= self.held_warning_seconds:
            self._held_warned = now
            log.warning(
                "outbox rows held back by an older transaction still open in the database",
                relay=self.name,
                held_seconds=round(waited, 1),
                hint="pg_stat_activity shows the sessions in a transaction (xact_start)",
            )

    async def _drain_once(self, conn: asyncpg.Connection) -> str:
        # Rows held back by an older transaction still open are read again only once the first
        # of them is final: asking reads one index entry, reading them a batch of rows.
        if self._held and await conn.fetchval(_HEAD_FINAL, *self._cursor) is False:
            return "pending"
        rows = await conn.fetch(_FETCH, self._cursor[0], self._cursor[1], self.batch)
        self.rows_read += len(rows)
        ready = []
        for row in rows:
            if not row["final"]:
                break
            ready.append(row)
        self._held = len(ready) < len(rows)
        if len(rows) == self.batch or self._held:
            await self._measure_lag(conn)
        if ready:
            await self._publish(ready)
            observability.OUTBOX_PUBLISHED.labels(self.outbox.schema).inc(len(ready))
            self._cursor = (ready[-1]["tx_id"], ready[-1]["seq"])
            self._unpersisted += len(ready)
            self.published += len(ready)
            if self._unpersisted >= self.persist_every:
                await self._persist(conn)
        if len(ready) < len(rows):
            return "pending"
        return "rows" if len(rows) == self.batch else "idle"

    async def _measure_lag(self, conn: asyncpg.Connection) -> None:
        """Count the rows not yet published, at most once a second (a count reads them all)."""
        now = asyncio.get_running_loop().time()
        if now - self._lag_measured < 1.0:
            return
        self._lag_measured = now
        observability.OUTBOX_LAG_ROWS.labels(self.outbox.schema).set(
            await conn.fetchval(_BACKLOG, self._cursor[0], self._cursor[1])
        )

    async def _publish(self, rows: list[Any]) -> None:
        """Publish rows pipelined until each is acknowledged; a lost connection propagates, so
        the relay reconnects and leads afresh."""
        messages = [
            Outgoing(r["subject"], r["body"].encode(), str(r["event_id"]), _headers(r))
            for r in rows
        ]
        acks = await publish_acknowledged(
            self.js,
            messages,
            timeout=self.ack_timeout,
            retry_send_errors=False,
            relay=self.name,
        )
        self._note_duplicates(rows, acks)

    def _note_duplicates(self, rows: list[Any], acks: list[Any]) -> None:
        """JetStream answers ``duplicate`` for an event id it already holds. That is expected
        after taking the lead, until the first row the server did not hold yet: the relay before
        persisted its cursor at most every ``persist_every`` rows, or stopped with a batch in
        flight. At any other time it means a row's event was not stored by this publish, so it
        is logged as a warning with the rows it concerns."""
        held = [bool(getattr(ack, "duplicate", False)) for ack in acks]
        replayed = 0
        if self._replaying:
            replayed = held.index(False) if False in held else len(held)
            self._replaying = replayed == len(held)
            if replayed:
                self.replayed += replayed
                log.info(
                    "outbox rows published before this relay took the lead",
                    relay=self.name,
                    count=replayed,
                )
        duplicates = [row for row, dup in zip(rows[replayed:], held[replayed:], strict=True) if dup]
        if duplicates:
            self.duplicates += len(duplicates)
            log.warning(
                "outbox rows acknowledged as duplicates",
                relay=self.name,
                count=len(duplicates),
                first_seq=duplicates[0]["seq"],
                first_event_id=str(duplicates[0]["event_id"]),
            )

    async def _persist(self, conn: asyncpg.Connection) -> None:
        if not self._unpersisted:
            return
        await conn.execute(
            """INSERT INTO outbox_cursor (relay, tx_id, seq) VALUES ($1, $2::text::xid8, $3)
               ON CONFLICT (relay) DO UPDATE SET tx_id = EXCLUDED.tx_id, seq = EXCLUDED.seq,
                                                 updated_at = now()""",
            self.name,
            self._cursor[0],
            self._cursor[1],
        )
        self._unpersisted = 0
        self._persisted_at = asyncio.get_running_loop().time()
