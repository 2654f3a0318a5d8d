"""The runner ↔ scheduler protocol that fences attempts (core NATS request/reply).

The scheduler owns a job's state. Before running, a runner *claims* the job: the first delivery
of a WORK message runs the dispatched attempt; a redelivery (its runner was lost) becomes a new
attempt, or the end of the job for agentic skills, which never run twice. When it is done, the
runner *completes* the attempt; the scheduler accepts only the current attempt and emits the
terminal event itself, so a stale runner that wakes up late cannot finish a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any, Final, Literal, TypeVar
from uuid import UUID

import nats.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import BaseModel, ConfigDict, ValidationError

from puras_common import subjects
from puras_common.errors import backoff
from puras_common.logging import get_logger

log = get_logger("puras_common.attempts")

CLAIM: Final = subjects.svc("scheduler", "claim")
COMPLETE: Final = subjects.svc("scheduler", "complete")


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True)


_M = TypeVar("_M", bound=_Message)


class ClaimRequest(_Message):
    job_id: UUID
    dispatched_attempt: int
    delivery: int
    """How many times JetStream has delivered this WORK message (1 = first)."""
    runner: str


class ClaimReply(_Message):
    run: bool
    attempt: int = 0
    reason: str = ""
    wait_seconds: float = 0.0
    """Ask again after this long: an earlier delivery of the work is still running somewhere."""


RUNNERS: Final = ("function-runner", "agent-runner")

HOLDS_TIMEOUT: Final = 2.0
"""How long the scheduler waits for a runner to say it still holds a redelivered job."""


async def still_held(nc: NATS, job_id: UUID, delivery: int) -> bool:
    """Whether a live runner holds an earlier delivery of ``job_id``'s work (it answers on
    ``svc.<runner>.holds``; a runner that holds nothing stays silent)."""
    body = orjson.dumps({"job_id": str(job_id), "delivery": delivery})

    async def ask(runner: str) -> bool:
        try:
            await nc.request(subjects.svc(runner, "holds"), body, timeout=HOLDS_TIMEOUT)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            return False
        return True

    return any(await asyncio.gather(*(ask(r) for r in RUNNERS)))


class CompleteRequest(_Message):
    job_id: UUID
    attempt: int
    type: Literal["job.succeeded", "job.failed", "job.cancelled", "job.input_requested"]
    payload: dict[str, Any]
    """The terminal event's payload, as the catalogue defines it for ``type``; or, for
    ``job.input_requested``, the question the attempt ends on to wait for its answer."""
    runner: str


class CompleteReply(_Message):
    accepted: bool
    reason: str = ""


class AttemptClient:
    """A runner's side of the protocol: requests retried until the scheduler answers."""

    def __init__(self, nc: NATS, *, runner: str, timeout: float = 5.0) -> None:
        self.nc = nc
        self.runner = runner
        self.timeout = timeout

    async def _ask(self, subject: str, request: _Message, reply: type[_M]) -> _M:
        attempt = 0
        while True:
            try:
                msg = await self.nc.request(
                    subject, request.model_dump_json().encode(), timeout=self.timeout
                )
                return reply.model_validate_json(msg.data)
            except (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                ValidationError,
            ) as exc:
                delay = backoff(attempt, base=0.1, cap=5.0)
                log.warning(
                    "scheduler did not answer; retrying",
                    subject=subject,
                    error=repr(exc),
                    retry_in=delay,
                )
                attempt += 1
                await asyncio.sleep(delay)

    async def claim(self, job_id: UUID, *, dispatched_attempt: int, delivery: int) -> ClaimReply:
        """Whether to run the job, and as which attempt. While an earlier delivery of the same
        work is still running elsewhere (JetStream redelivered it after an outage), waits: that
        one ends the job, or dies and this one takes over."""
        request = ClaimRequest(
            job_id=job_id,
            dispatched_attempt=dispatched_attempt,
            delivery=delivery,
            runner=self.runner,
        )
        while True:
            reply = await self._ask(CLAIM, request, ClaimReply)
            if reply.wait_seconds <= 0:
                return reply
            log.info("work still held elsewhere; waiting", job_id=str(job_id), reason=reply.reason)
            await asyncio.sleep(reply.wait_seconds)

    async def complete(
        self,
        job_id: UUID,
        attempt: int,
        event_type: str,
        payload: BaseModel,
    ) -> CompleteReply:
        request = CompleteRequest(
            job_id=job_id,
            attempt=attempt,
            type=event_type,
            payload=payload.model_dump(mode="json"),
            runner=self.runner,
        )
        return await self._ask(COMPLETE, request, CompleteReply)


class CancelWatch:
    """Cancellation requests for the jobs this runner holds, from ``job.*.cancel_requested``.

    A request that arrives before the job is registered here (between claim and start) is
    remembered for a while, so it is not missed.
    """

    def __init__(self, nc: NATS, *, remember_seconds: float = 600.0) -> None:
        self.nc = nc
        self.remember_seconds = remember_seconds
        self._running: dict[UUID, asyncio.Event] = {}
        self._recent: dict[UUID, float] = {}
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(
            subjects.job("*", "cancel_requested"), cb=self._on_request
        )

    async def _on_request(self, msg: Msg) -> None:
        job_id = UUID(subjects.job_id_of(msg.subject))
        now = time.monotonic()
        self._recent = {k: t for k, t in self._recent.items() if now - t < self.remember_seconds}
        self._recent[job_id] = now
        if (event := self._running.get(job_id)) is not None:
            event.set()

    @contextlib.contextmanager
    def watch(self, job_id: UUID) -> Iterator[asyncio.Event]:
        """An event set when ``job_id`` is to be cancelled (already set if it was)."""
        event = asyncio.Event()
        if job_id in self._recent:
            event.set()
        self._running[job_id] = event
        try:
            yield event
        finally:
            self._running.pop(job_id, None)


ATTEMPT: Final = subjects.svc("scheduler", "attempt")
"""Whether an attempt of a job is the one dispatched or running now (the scheduler answers)."""


class AttemptQuery(_Message):
    job_id: UUID
    attempt: int


class AttemptAnswer(_Message):
    live: bool


async def attempt_is_live(
    nc: NATS, job_id: UUID, attempt: int, *, timeout: float = 1.5, subject: str = ATTEMPT
) -> bool:
    """Whether the scheduler confirms that ``attempt`` of ``job_id`` is dispatched or running;
    False when it says otherwise, or answers what cannot be read.

    A scheduler that does not answer (restarting, or a NATS node failing over) decides nothing:
    ``nats.errors.TimeoutError`` or ``NoRespondersError`` is raised, both transient, so the one
    asking stays silent and its caller asks again, rather than refusing a job that runs."""
    body = AttemptQuery(job_id=job_id, attempt=attempt).model_dump_json().encode()
    msg = await nc.request(subject, body, timeout=timeout)
    try:
        return AttemptAnswer.model_validate_json(msg.data).live
    except ValidationError:
        return False
