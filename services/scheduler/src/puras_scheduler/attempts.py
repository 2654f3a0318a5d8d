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
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from puras_common.api import TERMINAL_SQL, TERMINAL_STATUSES
from puras_common.attempts import (
    AttemptAnswer,
    AttemptQuery,
    ClaimReply,
    ClaimRequest,
    CompleteReply,
    CompleteRequest,
    still_held,
)
from puras_common.envelope import CATALOGUE, Event, Payload, payload_model
from puras_common.events import JobCancelled, JobFailed, JobInputRequested, JobKind, JobRetrying
from puras_common.events.jobs import (
    CancelledPayload,
    FailedPayload,
    InputRequestedPayload,
    RetryingPayload,
)
from puras_common.logging import get_logger
from puras_common.observability import JOBS_FINISHED
from puras_common.outbox import Outbox, UnitOfWork
from pydantic import BaseModel, ValidationError

from puras_scheduler import input_requests, retries
from puras_scheduler.tree import end_children

log = get_logger("puras_scheduler.attempts")

MAX_BATCH = 128


@dataclass
class _Job:
    """A locked job row, changed in memory while a batch is decided."""

    workspace_id: UUID
    status: str
    attempt: int
    kind: str
    cancel_requested_at: datetime | None
    claimed_by: str | None = None
    claim_delivery: int | None = None
    changed: bool = False
    runner: str | None = None
    started: bool = False
    answered: int = 0
    """Questions the job has had answered."""
    dispatched_attempt: int | None = None
    """The attempt the job's latest dispatch carries (a job that waited is dispatched again)."""
    question: InputRequestedPayload | None = None
    """Set when the attempt ended on a question."""
    retries: dict[str, Any] | None = None
    """The skill's retry policy, from the job's spec."""
    retry_at: datetime | None = None
    """Set when a failed attempt is to run again: not dispatched before then."""
    events: list[Event] = field(default_factory=list)

    @property
    def runs(self) -> int:
        """Attempts that counted against the job's retries: each answered question ended a run
        that lost no worker and did not fail."""
        return self.attempt - self.answered

    def end(self, job_id: UUID, status: str, event: type[Event], payload: Payload) -> None:
        self.status, self.changed = status, True
        self.events.append(
            event.new(payload, producer="scheduler", workspace_id=self.workspace_id, job_id=job_id)
        )


class Attempts:
    def __init__(self, outbox: Outbox, *, max_attempts: int, nc: NATS | None = None) -> None:
        self.outbox = outbox
        self.max_attempts = max_attempts
        self.nc = nc
        """To ask runners whether redelivered work is still held (None: never ask)."""
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
        held = await self._held(requests)
        return await self._decide(
            [r.job_id for r in requests],
            lambda jobs: [self._claim(jobs, r, held=r.job_id in held) for r in requests],
        )

    async def _held(self, requests: Sequence[ClaimRequest]) -> set[UUID]:
        """The redelivered jobs whose earlier delivery a live runner still runs: a NATS outage
        or a missed heartbeat redelivers work without losing its worker, and that is not an
        attempt lost. (Asked before the transaction, so no row stays locked meanwhile.)"""
        again = [r for r in requests if r.delivery > 1]
        if self.nc is None or not again:
            return set()
        answers = await asyncio.gather(*(still_held(self.nc, r.job_id, r.delivery) for r in again))
        return {r.job_id for r, yes in zip(again, answers, strict=True) if yes}

    def _claim(self, jobs: dict[UUID, _Job], req: ClaimRequest, *, held: bool) -> ClaimReply:
        job = jobs.get(req.job_id)
        if job is None:
            return ClaimReply(run=False, reason="unknown job")
        if job.status in TERMINAL_STATUSES:
            return ClaimReply(run=False, reason=f"job is already {job.status}")
        if job.dispatched_attempt is not None and req.dispatched_attempt < job.dispatched_attempt:
            # The work of a run that ended on a question, redelivered after the job ran on.
            return ClaimReply(run=False, reason="superseded by a later dispatch")
        if job.status == "waiting":  # its run ended on a question; the work came again
            return ClaimReply(run=False, reason="job is waiting for input")
        if job.cancel_requested_at is not None:
            job.end(
                req.job_id,
                "cancelled",
                JobCancelled,
                CancelledPayload(attempt=job.attempt, reason="cancelled before it started"),
            )
            return ClaimReply(run=False, reason="cancelled")
        if job.status == "dispatched":
            job.status, job.runner, job.started, job.changed = "running", req.runner, True, True
            job.claimed_by, job.claim_delivery = req.runner, req.delivery
            return ClaimReply(run=True, attempt=job.attempt)
        if (job.claimed_by, job.claim_delivery) == (req.runner, req.delivery):
            # The same claim again: its answer was lost (a timeout while we restarted).
            return ClaimReply(run=True, attempt=job.attempt)
        if held:  # 'running', and its runner is alive: the redelivery waits for that one
            return ClaimReply(run=False, reason="still running elsewhere", wait_seconds=1.0)
        # 'running': the runner that started it was lost and JetStream redelivered its work.
        lost = f"its worker was lost (attempt {job.attempt})"
        if job.kind == JobKind.AGENT.value:
            job.end(
                req.job_id,
                "failed",
                JobFailed,
                FailedPayload(
                    attempt=job.attempt,
                    reason="worker_lost",
                    error=f"worker lost: {lost}; agentic jobs are not run twice",
                ),
            )
            return ClaimReply(run=False, reason="worker lost")
        if job.runs >= self.max_attempts:
            job.end(
                req.job_id,
                "failed",
                JobFailed,
                FailedPayload(
                    attempt=job.attempt,
                    reason="worker_lost",
                    error=f"worker lost: {lost}; gave up after {self.max_attempts} attempts",
                ),
            )
            return ClaimReply(run=False, reason="attempts exhausted")
        job.attempt += 1
        job.runner, job.started, job.changed = req.runner, True, True
        job.claimed_by, job.claim_delivery = req.runner, req.delivery
        job.events.append(
            JobRetrying.new(
                RetryingPayload(attempt=job.attempt, reason=lost),
                producer="scheduler",
                workspace_id=job.workspace_id,
                job_id=req.job_id,
            )
        )
        return ClaimReply(run=True, attempt=job.attempt)

    async def complete_batch(self, requests: Sequence[CompleteRequest]) -> list[CompleteReply]:
        """Accept an attempt's outcome only from the job's current attempt, once; emit its
        terminal event."""
        return await self._decide(
            [r.job_id for r in requests], lambda jobs: [self._complete(jobs, r) for r in requests]
        )

    def _complete(self, jobs: dict[UUID, _Job], req: CompleteRequest) -> CompleteReply:
        cls = CATALOGUE[req.type]
        try:
            payload = payload_model(cls).model_validate(req.payload)
        except ValidationError as exc:
            return CompleteReply(accepted=False, reason=f"invalid {req.type} payload: {exc}")
        job = jobs.get(req.job_id)
        if job is None:
            return CompleteReply(accepted=False, reason="unknown job")
        status = "waiting" if req.type == "job.input_requested" else req.type.removeprefix("job.")
        if job.attempt != req.attempt:
            return CompleteReply(
                accepted=False,
                reason=f"attempt {req.attempt} was superseded by attempt {job.attempt}",
            )
        if job.status in TERMINAL_STATUSES or (job.status == "waiting" and status == "waiting"):
            same = job.status == status
            return CompleteReply(
                accepted=same, reason="" if same else f"job is already {job.status}"
            )
        if isinstance(payload, InputRequestedPayload):
            return self._ask(job, req, payload)
        if isinstance(payload, FailedPayload) and self._retry(job, req.job_id, payload):
            return CompleteReply(accepted=True)
        job.end(req.job_id, status, cls, payload)
        return CompleteReply(accepted=True)

    def _retry(self, job: _Job, job_id: UUID, failure: FailedPayload) -> bool:
        """Queue the job again if its skill's policy retries this failure (see ``retries``)."""
        if job.cancel_requested_at is not None or job.kind != JobKind.FUNCTION.value:
            return False
        pause = retries.pause_before(job.retries, failed_attempt=job.runs, failure=failure)
        if pause is None:
            return False
        assert job.retries is not None
        job.status, job.changed = "queued", True
        job.retry_at = datetime.now(UTC) + timedelta(seconds=pause)
        job.events.append(
            JobRetrying.new(
                RetryingPayload(
                    attempt=job.attempt + 1,
                    reason=(
                        f"attempt {job.runs} of {job.retries['max_attempts']} failed "
                        f"({failure.reason}): {failure.error}"
                    ),
                    retry_in_seconds=round(pause, 3),
                    compute=failure.compute,
                ),
                producer="scheduler",
                workspace_id=job.workspace_id,
                job_id=job_id,
            )
        )
        return True

    def _ask(
        self, job: _Job, req: CompleteRequest, question: InputRequestedPayload
    ) -> CompleteReply:
        """The attempt ends on a question: the job waits, in no slot, for its answer."""
        if job.cancel_requested_at is not None:
            job.end(
                req.job_id,
                "cancelled",
                JobCancelled,
                CancelledPayload(attempt=job.attempt, reason="cancelled as it asked for input"),
            )
            return CompleteReply(accepted=False, reason="cancelled")
        question = input_requests.asked(question, answered=job.answered, now=datetime.now(UTC))
        job.status, job.changed, job.question = "waiting", True, question
        job.events.append(
            JobInputRequested.new(
                question, producer="scheduler", workspace_id=job.workspace_id, job_id=req.job_id
            )
        )
        return CompleteReply(accepted=True)

    async def _decide(
        self, job_ids: list[UUID], decide: Callable[[dict[UUID, _Job]], list[BaseModel]]
    ) -> list[Any]:
        async with self.outbox.transaction() as uow:
            rows = await uow.conn.fetch(
                """SELECT id, workspace_id, status, attempt, kind, cancel_requested_at, runner,
                          claim_delivery, jsonb_array_length(answers) AS answered,
                          dispatched_attempt, spec->'retries' AS retries
                   FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE""",
                list(set(job_ids)),
            )
            jobs = {
                r["id"]: _Job(
                    r["workspace_id"],
                    r["status"],
                    r["attempt"],
                    r["kind"],
                    r["cancel_requested_at"],
                    claimed_by=r["runner"],
                    claim_delivery=r["claim_delivery"],
                    answered=r["answered"],
                    dispatched_attempt=r["dispatched_attempt"],
                    retries=r["retries"],
                )
                for r in rows
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
            f"""UPDATE jobs SET status = $2, attempt = $3,
                   runner = coalesce($4, runner), claim_delivery = coalesce($7, claim_delivery),
                   retry_at = coalesce($8, retry_at),
                   started_at = CASE WHEN $5 THEN $6 ELSE started_at END,
                   finished_at = CASE WHEN $2 IN {TERMINAL_SQL} THEN $6 ELSE finished_at END
               WHERE id = $1""",
            [
                (
                    job_id,
                    j.status,
                    j.attempt,
                    j.runner,
                    j.started,
                    now,
                    j.claim_delivery,
                    j.retry_at,
                )
                for job_id, j in changed
            ],
        )
        questions = [(job_id, job.question) for job_id, job in changed if job.question]
        if questions:
            await input_requests.record_questions(uow, questions)
        for _job_id, job in changed:
            uow.emit(*job.events)
            if job.status in TERMINAL_STATUSES:
                JOBS_FINISHED.labels(job.status, job.kind).inc()
        for job_id, job in changed:
            if job.status in TERMINAL_STATUSES:  # a subagent tree ends with its parent
                await end_children(
                    uow, job_id, why=f"cancelled: its parent job {job_id} {job.status}"
                )

    # -- serving the requests over NATS

    async def serve_attempt(self, msg: Msg) -> None:
        """``svc.scheduler.attempt``: whether an attempt is the job's dispatched or running one
        (the deployments service asks before it hands out the job's secrets)."""
        try:
            query = AttemptQuery.model_validate_json(msg.data)
        except ValidationError as exc:
            await msg.respond(orjson.dumps({"error": str(exc)}))
            return
        live = await self.outbox.pool.fetchval(
            """SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND attempt = $2
                              AND status IN ('dispatched', 'running'))""",
            query.job_id,
            query.attempt,
        )
        await msg.respond(AttemptAnswer(live=bool(live)).model_dump_json().encode())

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

    async def _drain(
        self, kind: str, decide: Any, after: Callable[[], Awaitable[None]] | None
    ) -> None:
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
