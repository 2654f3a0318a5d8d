"""Sending deliveries: signed, through the SSRF guard, retried with backoff, every attempt logged.

Any number of replicas run :class:`Sender`. A due delivery is claimed with ``FOR UPDATE SKIP
LOCKED`` under a lease (a fencing token and a time); the attempt is made outside any
transaction; its outcome is recorded only by the sender that still holds the lease, so a sender
that stalled past its lease cannot overwrite what the next one decided. A receiver may see a
delivery twice (a sender that dies after sending, before recording) but always under the same
``webhook-id``: delivery is at least once, and the id makes it once for a receiver that checks.

A 2xx answer is a success; anything else (a 3xx too: redirects are not followed), a timeout or
a refusal by the guard is a failure, retried after the next delay of the schedule, until the
schedule runs out. An endpoint that has failed continuously for long enough, often enough, is
disabled, and ``webhook.disabled`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import asyncpg
import httpx
import orjson
from puras_common.errors import while_away
from puras_common.events import WebhookDisabled
from puras_common.events.webhooks import WebhookDisabledPayload
from puras_common.ids import new_id
from puras_common.logging import get_logger
from puras_common.observability import WEBHOOK_ATTEMPTS, WEBHOOK_SECONDS, WEBHOOKS_DISABLED
from puras_common.outbox import Outbox, UnitOfWork
from puras_common.ssrf import BlockedURL, FetchError, Policy, post

from puras_webhooks import intake, signing
from puras_webhooks.endpoints import fail_pending
from puras_webhooks.settings import WebhooksSettings

log = get_logger("puras_webhooks.sender")

EXCERPT_CHARS: Final = 1024
USER_AGENT: Final = "Puras-Webhooks/1"
REFUSED: Final = "refused by the SSRF guard"


@dataclass(frozen=True)
class Claim:
    """A delivery this sender holds for one attempt."""

    id: UUID
    endpoint_id: UUID
    url: str
    payload: dict[str, Any]
    n: int
    """This attempt's number (1 for the first)."""
    secrets: list[str]
    token: UUID


@dataclass(frozen=True)
class Outcome:
    started_at: datetime
    latency_ms: int
    status_code: int | None
    excerpt: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def kind(self) -> str:
        """``succeeded``, ``status`` (a non-2xx answer), ``refused`` (the guard) or ``error``."""
        if self.ok:
            return "succeeded"
        if self.status_code is not None:
            return "status"
        return "refused" if (self.error or "").startswith(REFUSED) else "error"


class Sender:
    def __init__(
        self,
        outbox: Outbox,
        http: httpx.AsyncClient,
        *,
        settings: WebhooksSettings,
        policy: Policy,
    ) -> None:
        self.outbox = outbox
        self.http = http
        self.settings = settings
        self.policy = policy
        self.retries = settings.retries
        self.wake = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.sent = 0

    async def run(self, *, max_sleep: float = 1.0) -> None:
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self.wake.clear()
            room = self.settings.concurrency - len(self.in_flight)
            claims = (
                await while_away(functools.partial(self.claim, room), what="webhook deliveries")
                if room > 0
                else []
            )
            for claim in claims:
                task = asyncio.create_task(self.attempt(claim))
                self.in_flight.add(task)
                task.add_done_callback(self._done)
            if loop.time() - last_prune > 300:
                await while_away(
                    lambda: intake.prune(
                        self.outbox.pool, older_than=datetime.now(UTC) - timedelta(days=1)
                    ),
                    what="webhook intake pruning",
                )
                last_prune = loop.time()
            if len(claims) == room and room > 0:
                continue
            wait = await while_away(lambda: self._until_next(max_sleep), what="webhook deliveries")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.wake.set()  # a slot is free

    async def _until_next(self, max_sleep: float) -> float:
        seconds = await self.outbox.pool.fetchval(
            """SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp())::float8
               FROM deliveries WHERE status = 'pending'"""
        )
        return max_sleep if seconds is None else min(max_sleep, max(0.01, seconds))

    async def claim(self, limit: int) -> list[Claim]:
        """Take up to ``limit`` due deliveries under a lease."""
        token = new_id()
        async with self.outbox.transaction() as uow:
            rows = await uow.conn.fetch(
                """SELECT d.id, d.endpoint_id, d.url, d.payload, d.attempts,
                          e.secret, e.previous_secret, e.previous_until
                   FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
                   WHERE d.status = 'pending' AND d.next_attempt_at <= clock_timestamp()
                   ORDER BY d.next_attempt_at LIMIT $1
                   FOR UPDATE OF d SKIP LOCKED""",
                limit,
            )
            if not rows:
                return []
            await uow.conn.execute(
                """UPDATE deliveries SET lease_owner = $2, attempts = attempts + 1,
                          next_attempt_at = clock_timestamp() + make_interval(secs => $3)
                   WHERE id = ANY($1)""",
                [r["id"] for r in rows],
                token,
                self.settings.lease_seconds,
            )
        now = datetime.now(UTC)
        return [
            Claim(
                id=r["id"],
                endpoint_id=r["endpoint_id"],
                url=r["url"],
                payload=r["payload"],
                n=r["attempts"] + 1,
                secrets=[r["secret"]]
                + (
                    [r["previous_secret"]]
                    if r["previous_secret"] and r["previous_until"] and r["previous_until"] > now
                    else []
                ),
                token=token,
            )
            for r in rows
        ]

    async def attempt(self, claim: Claim) -> None:
        """Send once and record what happened; never raises (a failure is an outcome)."""
        try:
            await self.record(claim, await self.send(claim))
        except Exception:  # the lease runs out and another attempt follows
            log.exception("could not complete an attempt", delivery=str(claim.id))

    async def send(self, claim: Claim) -> Outcome:
        body = orjson.dumps(claim.payload).decode()
        started = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signing.headers(
                message_id=str(claim.id), timestamp=started, body=body, secrets=claim.secrets
            ),
        }
        t0 = time.monotonic()
        status_code, excerpt, error = None, "", None
        try:
            answer = await post(
                self.http,
                claim.url,
                content=body.encode(),
                headers=headers,
                policy=self.policy,
                timeout=self.settings.timeout_seconds,
                max_bytes=4 * EXCERPT_CHARS,
            )
            status_code = answer.status_code
            excerpt = answer.body.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
            if not 200 <= status_code < 300:
                error = f"the endpoint answered HTTP {status_code}"
        except BlockedURL as exc:
            error = f"{REFUSED}: {exc}"
        except FetchError as exc:
            error = str(exc)
        seconds = time.monotonic() - t0
        outcome = Outcome(started, round(seconds * 1000), status_code, excerpt, error)
        WEBHOOK_SECONDS.observe(seconds)
        WEBHOOK_ATTEMPTS.labels(outcome=outcome.kind).inc()
        return outcome

    async def record(self, claim: Claim, outcome: Outcome) -> None:
        async with self.outbox.transaction() as uow:
            await uow.conn.execute(
                """INSERT INTO attempts (delivery_id, n, started_at, status_code, latency_ms,
                                         response_excerpt, error)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
                claim.id,
                claim.n,
                outcome.started_at,
                outcome.status_code,
                outcome.latency_ms,
                outcome.excerpt,
                outcome.error,
            )
            row = await uow.conn.fetchrow(
                "SELECT tries FROM deliveries WHERE id = $1 AND lease_owner = $2 FOR UPDATE",
                claim.id,
                claim.token,
            )
            if row is None:
                return  # the lease ran out (or a redeliver reset it): the holder decides
            if outcome.ok:
                await self._succeeded(uow.conn, claim)
            else:
                await self._failed(uow, claim, outcome, tries=row["tries"] + 1)
        self.sent += 1

    async def _succeeded(self, conn: asyncpg.Connection, claim: Claim) -> None:
        await conn.execute(
            """UPDATE deliveries SET status = 'succeeded', finished_at = now(), last_error = NULL,
                      lease_owner = NULL
               WHERE id = $1""",
            claim.id,
        )
        await conn.execute(
            """UPDATE endpoints SET consecutive_failures = 0, failing_since = NULL
               WHERE id = $1 AND consecutive_failures > 0""",
            claim.endpoint_id,
        )

    async def _failed(self, uow: UnitOfWork, claim: Claim, outcome: Outcome, *, tries: int) -> None:
        if tries > len(self.retries):
            await uow.conn.execute(
                """UPDATE deliveries SET status = 'failed', tries = $2, last_error = $3,
                          finished_at = now(), lease_owner = NULL
                   WHERE id = $1""",
                claim.id,
                tries,
                f"gave up after {tries} attempts: {outcome.error}",
            )
        else:
            delay = self.retries[tries - 1] * random.uniform(0.9, 1.1)
            await uow.conn.execute(
                """UPDATE deliveries SET tries = $2, last_error = $3, lease_owner = NULL,
                          next_attempt_at = clock_timestamp() + make_interval(secs => $4)
                   WHERE id = $1""",
                claim.id,
                tries,
                outcome.error,
                delay,
            )
        await self._endpoint_failed(uow, claim)

    async def _endpoint_failed(self, uow: UnitOfWork, claim: Claim) -> None:
        """Count the failure against a registered endpoint; disable it once it has kept failing
        (a job's own webhook_url is not an endpoint the workspace keeps: never disabled)."""
        endpoint = await uow.conn.fetchrow(
            """UPDATE endpoints SET consecutive_failures = consecutive_failures + 1,
                      failing_since = coalesce(failing_since, now())
               WHERE id = $1 AND kind = 'endpoint' AND enabled
               RETURNING id, workspace_id, url, consecutive_failures, failing_since,
                         now() - failing_since AS failing_for""",
            claim.endpoint_id,
        )
        if endpoint is None:
            return
        s = self.settings
        if endpoint["consecutive_failures"] < s.disable_after_failures or (
            endpoint["failing_for"].total_seconds() < s.disable_after_seconds
        ):
            return
        reason = (
            f"{endpoint['consecutive_failures']} attempts in a row failed since "
            f"{endpoint['failing_since'].isoformat()}"
        )
        await uow.conn.execute(
            """UPDATE endpoints SET enabled = false, disabled_reason = $2, disabled_at = now()
               WHERE id = $1""",
            endpoint["id"],
            reason,
        )
        await fail_pending(uow.conn, endpoint["id"], why=f"the webhook was disabled: {reason}")
        uow.emit(
            WebhookDisabled.new(
                WebhookDisabledPayload(
                    endpoint_id=endpoint["id"],
                    url=endpoint["url"],
                    reason=reason,
                    failures=endpoint["consecutive_failures"],
                    failing_since=endpoint["failing_since"],
                ),
                producer="webhooks",
                workspace_id=endpoint["workspace_id"],
            )
        )
        WEBHOOKS_DISABLED.inc()
        log.warning("webhook disabled", endpoint=str(endpoint["id"]), reason=reason)
