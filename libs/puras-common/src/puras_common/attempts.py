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


class CompleteRequest(_Message):
    job_id: UUID
    attempt: int
    type: Literal["job.succeeded", "job.failed", "job.cancelled"]
    payload: dict[str, Any]
    """The terminal event's payload, as the catalogue defines it for ``type``."""
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
                msg = await self.nc.request(subject, request.model_dump_json().encode(), timeout=self.timeout)
                return reply.model_validate_json(msg.data)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError, ValidationError) as exc:
                delay = backoff(attempt, base=0.1, cap=5.0)
                log.warning("scheduler did not answer; retrying", subject=subject, error=repr(exc), retry_in=delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def claim(self, job_id: UUID, *, dispatched_attempt: int, delivery: int) -> ClaimReply:
        request = ClaimRequest(job_id=job_id, dispatched_attempt=dispatched_attempt, delivery=delivery, runner=self.runner)
        return await self._ask(CLAIM, request, ClaimReply)

    async def complete(self, job_id: UUID, attempt: int, event_type: str, payload: BaseModel) -> CompleteReply:
        request = CompleteRequest(
            job_id=job_id, attempt=attempt, type=event_type,  # type: ignore[arg-type]
            payload=payload.model_dump(mode="json"), runner=self.runner,
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
        self._sub = await self.nc.subscribe(subjects.job("*", "cancel_requested"), cb=self._on_request)

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
