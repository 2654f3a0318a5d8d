"""Claims and completions of attempts: the single place a job starts and ends.

Requests waiting at the same moment are decided together: one transaction locks their jobs'
rows (in id order), decides each request in arrival order against the rows as the earlier ones
left them, writes the changes and events, and commits once — so concurrent runners (a lost one
that woke up, a redelivery) are serialised, only the current attempt wins, and a busy scheduler
pays one commit for many jobs. A request that arrives alone is decided at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from nats.aio.msg import Msg
from puras_common.attempts import ClaimReply, ClaimRequest, CompleteReply, CompleteRequest
from puras_common.envelope import CATALOGUE, Event, Payload
from puras_common.events import JobCancelled, JobFailed, JobKind, JobRetrying
from puras_common.events.jobs import CancelledPayload, FailedPayload, RetryingPayload
from puras_common.logging import get_logger
from puras_common.outbox import Outbox, UnitOfWork
from pydantic import BaseModel, ValidationError

from puras_scheduler.tree import end_children

log = get_logger("puras_scheduler.attempts")

TERMINAL = ("succeeded", "failed", "cancelled")
MAX_BATCH = 128


@dataclass
class _Job:
    """A locked job row, changed in memory while a batch is decided."""

    workspace_id: UUID
    status: str
    attempt: int
    kind: str
    cancel_requested_at: datetime | None
    changed: bool = False
    runner: str | None = None
    started: bool = False
    events: list[Event] = field(default_factory=list)

    def end(self, job_id: UUID, status: str, event: type[Event], payload: Payload) -> None:
        self.status, self.changed = status, True
        self.events.append(event.new(payload, producer="scheduler", workspace_id=self.workspace_id, job_id=job_id))


class Attempts:
    def __init__(self, outbox: Outbox, *, max_attempts: int) -> None:
        self.outbox = outbox
        self.max_attempts = max_attempts
        self._queues: dict[str, asyncio.Queue[tuple[Any, Msg]]] = {
            "claim": asyncio.Queue(),
            "complete": asyncio.Queue(),
        }

    async def claim(self, req: ClaimRequest) -> ClaimReply:
        return (await self.claim_batch([req]))[0]

    async def complete(self, req: CompleteRequest) -> CompleteReply:
        return (await self.complete_batch([req]))[0]

    async def claim_batch(self, requests: Sequence[ClaimRequest]) -> list[ClaimReply]:
        """Decide claims in order: the first delivery of a dispatch runs the dispatched attempt;
        a redelivery (its runner was lost) runs a new attempt, or ends the job — for agentic
        skills, which never run twice, or once attempts are exhausted."""
        return await self._decide([r.job_id for r in requests], lambda jobs: [self._claim(jobs, r) for r in requests])

    def _claim(self, jobs: dict[UUID, _Job], req: ClaimRequest) -> ClaimReply:
        job = jobs.get(req.job_id)
        if job is None:
            return ClaimReply(run=False, reason="unknown job")
        if job.status in TERMINAL:
            return ClaimReply(run=False, reason=f"job is already {job.status}")
        if job.cancel_requested_at is not None:
            job.end(req.job_id, "cancelled", JobCancelled, CancelledPayload(attempt=job.attempt, reason="cancelled before it started"))
            return ClaimReply(run=False, reason="cancelled")
        if job.status == "dispatched":
            job.status, job.runner, job.started, job.changed = "running", req.runner, True, True
            return ClaimReply(run=True, attempt=job.attempt)
        # 'running': the runner that started it was lost and JetStream redelivered its work.
        lost = f"its worker was lost (attempt {job.attempt})"
        if job.kind == JobKind.AGENT.value:
            job.end(req.job_id, "failed", JobFailed, FailedPayload(
                attempt=job.attempt, reason="worker_lost", error=f"worker lost: {lost}; agentic jobs are not run twice",
            ))
            return ClaimReply(run=False, reason="worker lost")
        if job.attempt >= self.max_attempts:
            job.end(req.job_id, "failed", JobFailed, FailedPayload(
                attempt=job.attempt, reason="worker_lost",
                error=f"worker lost: {lost}; gave up after {self.max_attempts} attempts",
            ))
            return ClaimReply(run=False, reason="attempts exhausted")
        job.attempt += 1
        job.runner, job.started, job.changed = req.runner, True, True
        job.events.append(JobRetrying.new(
            RetryingPayload(attempt=job.attempt, reason=lost), producer="scheduler", workspace_id=job.workspace_id, job_id=req.job_id,
        ))
        return ClaimReply(run=True, attempt=job.attempt)

    async def complete_batch(self, requests: Sequence[CompleteRequest]) -> list[CompleteReply]:
        """Accept an attempt's outcome only from the job's current attempt, once; emit its
        terminal event."""
        return await self._decide([r.job_id for r in requests], lambda jobs: [self._complete(jobs, r) for r in requests])

    def _complete(self, jobs: dict[UUID, _Job], req: CompleteRequest) -> CompleteReply:
        cls = CATALOGUE[req.type]
        try:
            payload = cls.model_fields["payload"].annotation.model_validate(req.payload)  # type: ignore[union-attr]
        except ValidationError as exc:
            return CompleteReply(accepted=False, reason=f"invalid {req.type} payload: {exc}")
        job = jobs.get(req.job_id)
        if job is None:
            return CompleteReply(accepted=False, reason="unknown job")
        status = req.type.removeprefix("job.")
        if job.attempt != req.attempt:
            return CompleteReply(accepted=False, reason=f"attempt {req.attempt} was superseded by attempt {job.attempt}")
        if job.status in TERMINAL:
            same = job.status == status
            return CompleteReply(accepted=same, reason="" if same else f"job is already {job.status}")
        job.end(req.job_id, status, cls, payload)
        return CompleteReply(accepted=True)

    async def _decide(self, job_ids: list[UUID], decide: Callable[[dict[UUID, _Job]], list[BaseModel]]) -> list[Any]:
        async with self.outbox.transaction() as uow:
            rows = await uow.conn.fetch(
                """SELECT id, workspace_id, status, attempt, kind, cancel_requested_at FROM jobs
                   WHERE id = ANY($1) ORDER BY id FOR UPDATE""",
                list(set(job_ids)),
            )
            jobs = {
                r["id"]: _Job(r["workspace_id"], r["status"], r["attempt"], r["kind"], r["cancel_requested_at"]) for r in rows
            }
            replies = decide(jobs)
            await self._write(uow, jobs)
        return replies

    async def _write(self, uow: UnitOfWork, jobs: dict[UUID, _Job]) -> None:
        changed = [(job_id, job) for job_id, job in jobs.items() if job.changed]
        if not changed:
            return
        now = datetime.now(UTC)
        await uow.conn.executemany(
            """UPDATE jobs SET status = $2, attempt = $3,
                   runner = coalesce($4, runner),
                   started_at = CASE WHEN $5 THEN $6 ELSE started_at END,
                   finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'cancelled') THEN $6 ELSE finished_at END
               WHERE id = $1""",
            [(job_id, j.status, j.attempt, j.runner, j.started, now) for job_id, j in changed],
        )
        for _job_id, job in changed:
            uow.emit(*job.events)
        for job_id, job in changed:
            if job.status in TERMINAL:  # a subagent tree ends with its parent
                await end_children(uow, job_id, why=f"cancelled: its parent job {job_id} {job.status}")

    # -- serving the requests over NATS

    async def serve_claim(self, msg: Msg) -> None:
        await self._enqueue("claim", ClaimRequest, msg)

    async def serve_complete(self, msg: Msg) -> None:
        await self._enqueue("complete", CompleteRequest, msg)

    async def _enqueue(self, kind: str, model: type[BaseModel], msg: Msg) -> None:
        try:
            request = model.model_validate_json(msg.data)
        except ValidationError as exc:
            await msg.respond(orjson.dumps({"error": str(exc)}))
            return
        self._queues[kind].put_nowait((request, msg))

    async def run(self, *, on_completed: Callable[[], Awaitable[None]] | None = None) -> None:
        """Decide queued requests, a batch at a time per kind, until cancelled."""
        await asyncio.gather(
            self._drain("claim", self.claim_batch, None),
            self._drain("complete", self.complete_batch, on_completed),
        )

    async def _drain(self, kind: str, decide: Any, after: Callable[[], Awaitable[None]] | None) -> None:
        queue = self._queues[kind]
        while True:
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                replies = await decide([request for request, _msg in batch])
            except Exception as exc:  # the runners retry; the loop must go on
                log.exception("could not decide a batch", kind=kind, size=len(batch))
                error = orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})
                for _request, msg in batch:
                    await msg.respond(error)
                continue
            for (_request, msg), reply in zip(batch, replies, strict=True):
                await msg.respond(reply.model_dump_json().encode())
            if after is not None:
                await after()
