"""Cancellation of running agent jobs: one :class:`asyncio.Event` per job, set when a
``job.<id>.cancel_requested`` event arrives; the loop checks it between steps.

:meth:`Cancellations.request` is the seam: the subscription here calls it, and so may anything
else that learns of a cancellation. A request that arrives before its job starts on this runner
is remembered for a while, and at start the runner also asks the JOBS stream whether one was
ever made, so no ordering of the two races a cancel away.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from uuid import UUID

import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from puras_common import streams, subjects
from puras_common.errors import TRANSIENT_ERRORS, backoff
from puras_common.logging import get_logger

log = get_logger("puras_agent_runner.cancellation")

REMEMBER_SECONDS = 3600.0
REMEMBER_MAX = 10_000


class Cancellations:
    """Which running jobs were asked to stop."""

    def __init__(self) -> None:
        self._running: dict[UUID, asyncio.Event] = {}
        self._early: OrderedDict[UUID, float] = OrderedDict()

    def watch(self, job_id: UUID) -> asyncio.Event:
        """The event that is set when ``job_id`` is to be cancelled (already set if it was)."""
        event = self._running.setdefault(job_id, asyncio.Event())
        if self._early.pop(job_id, None) is not None:
            event.set()
        return event

    def release(self, job_id: UUID) -> None:
        """The job ended here; forget it."""
        self._running.pop(job_id, None)

    def request(self, job_id: UUID) -> None:
        """Ask for ``job_id`` to stop (at its next step if it runs here, at start if it comes later)."""
        event = self._running.get(job_id)
        if event is not None:
            event.set()
            return
        now = time.monotonic()
        self._early[job_id] = now
        while self._early and (len(self._early) > REMEMBER_MAX or next(iter(self._early.values())) < now - REMEMBER_SECONDS):
            self._early.popitem(last=False)

    async def requested_in_stream(self, js: JetStreamContext, job_id: UUID) -> bool:
        """Whether the JOBS stream holds a cancel request for ``job_id`` (made before we listened)."""
        try:
            await js.get_last_msg(streams.JOBS.name, subjects.job(job_id, "cancel_requested"))
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def follow(self, js: JetStreamContext) -> None:
        """Listen for cancel requests until cancelled (each runner process sees all of them)."""
        attempt = 0
        while True:
            try:
                sub = await js.subscribe(
                    subjects.job("*", "cancel_requested"),
                    stream=streams.JOBS.name,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.NEW,
                    cb=self._on_message,
                )
            except TRANSIENT_ERRORS as exc:
                log.warning("cannot follow cancel requests yet", error=repr(exc))
                await asyncio.sleep(backoff(attempt, base=0.2, cap=5.0))
                attempt += 1
                continue
            try:
                await asyncio.Future()  # until cancelled
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _on_message(self, msg: Msg) -> None:
        try:
            self.request(UUID(subjects.job_id_of(msg.subject)))
        except ValueError:
            log.warning("cancel request on an odd subject", subject=msg.subject)
