"""Claims and completions of attempts: the single place a job starts and ends.

Each runs in one transaction with the job row locked, so concurrent runners (a lost one that
woke up, a redelivery) are serialised and only the current attempt wins.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
from nats.aio.msg import Msg
from puras_common.attempts import ClaimReply, ClaimRequest, CompleteReply, CompleteRequest
from puras_common.envelope import CATALOGUE, Event
from puras_common.events import JobCancelled, JobFailed, JobKind
from puras_common.events.jobs import CancelledPayload, FailedPayload, JobRetrying, RetryingPayload
from puras_common.logging import get_logger
from puras_common.outbox import Outbox, UnitOfWork
from pydantic import ValidationError

log = get_logger("puras_scheduler.attempts")

TERMINAL = ("succeeded", "failed", "cancelled")


class Attempts:
    def __init__(self, outbox: Outbox, *, max_attempts: int, concurrency: int = 32) -> None:
        self.outbox = outbox
        self.max_attempts = max_attempts
        # nats-py runs one subscription's callbacks one at a time; requests get tasks instead.
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    async def claim(self, req: ClaimRequest) -> ClaimReply:
        async with self.outbox.transaction() as uow:
            row = await uow.conn.fetchrow(
                "SELECT workspace_id, status, attempt, kind, cancel_requested_at FROM jobs WHERE id = $1 FOR UPDATE",
                req.job_id,
            )
            if row is None:
                return ClaimReply(run=False, reason="unknown job")
            if row["status"] in TERMINAL:
                return ClaimReply(run=False, reason=f"job is already {row['status']}")
            if row["cancel_requested_at"] is not None:
                await self._end(uow, row, req.job_id, JobCancelled, CancelledPayload(attempt=row["attempt"], reason="cancelled before it started"))
                return ClaimReply(run=False, reason="cancelled")
            if row["status"] == "dispatched":
                await self._start(uow.conn, req, row["attempt"])
                return ClaimReply(run=True, attempt=row["attempt"])
            # status 'running': the runner that started it was lost and JetStream redelivered.
            lost = f"its worker was lost (attempt {row['attempt']})"
            if row["kind"] == JobKind.AGENT.value:
                await self._end(uow, row, req.job_id, JobFailed, FailedPayload(
                    attempt=row["attempt"], reason="worker_lost",
                    error=f"worker lost: {lost}; agentic jobs are not run twice",
                ))
                return ClaimReply(run=False, reason="worker lost")
            if row["attempt"] >= self.max_attempts:
                await self._end(uow, row, req.job_id, JobFailed, FailedPayload(
                    attempt=row["attempt"], reason="worker_lost",
                    error=f"worker lost: {lost}; gave up after {self.max_attempts} attempts",
                ))
                return ClaimReply(run=False, reason="attempts exhausted")
            attempt = row["attempt"] + 1
            await self._start(uow.conn, req, attempt)
            uow.emit(JobRetrying.new(
                RetryingPayload(attempt=attempt, reason=lost), producer="scheduler",
                workspace_id=row["workspace_id"], job_id=req.job_id,
            ))
            return ClaimReply(run=True, attempt=attempt)

    async def _start(self, conn: asyncpg.Connection, req: ClaimRequest, attempt: int) -> None:
        await conn.execute(
            "UPDATE jobs SET status = 'running', attempt = $2, runner = $3, started_at = now() WHERE id = $1",
            req.job_id, attempt, req.runner,
        )

    async def _end(self, uow: UnitOfWork, row: asyncpg.Record, job_id: Any, cls: type[Event], payload: Any) -> None:
        status = {JobCancelled: "cancelled", JobFailed: "failed"}[cls]  # type: ignore[index]
        await uow.conn.execute("UPDATE jobs SET status = $2, finished_at = now() WHERE id = $1", job_id, status)
        uow.emit(cls.new(payload, producer="scheduler", workspace_id=row["workspace_id"], job_id=job_id))

    async def complete(self, req: CompleteRequest) -> CompleteReply:
        cls = CATALOGUE[req.type]
        try:
            payload = cls.model_fields["payload"].annotation.model_validate(req.payload)  # type: ignore[union-attr]
        except ValidationError as exc:
            return CompleteReply(accepted=False, reason=f"invalid {req.type} payload: {exc}")
        status = req.type.removeprefix("job.")
        async with self.outbox.transaction() as uow:
            row = await uow.conn.fetchrow(
                "SELECT workspace_id, status, attempt FROM jobs WHERE id = $1 FOR UPDATE", req.job_id
            )
            if row is None:
                return CompleteReply(accepted=False, reason="unknown job")
            if row["attempt"] != req.attempt:
                return CompleteReply(
                    accepted=False, reason=f"attempt {req.attempt} was superseded by attempt {row['attempt']}"
                )
            if row["status"] in TERMINAL:
                same = row["status"] == status
                return CompleteReply(accepted=same, reason="" if same else f"job is already {row['status']}")
            await uow.conn.execute(
                "UPDATE jobs SET status = $2, finished_at = now() WHERE id = $1", req.job_id, status
            )
            uow.emit(cls.new(payload, producer="scheduler", workspace_id=row["workspace_id"], job_id=req.job_id))
        return CompleteReply(accepted=True)

    async def serve_claim(self, msg: Msg) -> None:
        await self._serve(msg, ClaimRequest, self.claim)

    async def serve_complete(self, msg: Msg) -> None:
        await self._serve(msg, CompleteRequest, self.complete)

    async def _serve(self, msg: Msg, model: Any, handle: Any) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._answer(msg, model, handle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg, model: Any, handle: Any) -> None:
        try:
            await self._reply(msg, model, handle)
        except Exception:  # the runner retries; the failure must not end the subscription
            log.exception("request failed", subject=msg.subject)
        finally:
            self._slots.release()

    async def _reply(self, msg: Msg, model: Any, handle: Any) -> None:
        try:
            request = model.model_validate_json(msg.data)
        except ValidationError as exc:
            await msg.respond(orjson.dumps({"error": str(exc)}))
            return
        reply = await handle(request)
        await msg.respond(reply.model_dump_json().encode())
