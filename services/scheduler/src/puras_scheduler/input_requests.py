"""Jobs that wait for input: asked, answered, or out of time.

An attempt that asks a question ends there (its runner releases the slot and the sandbox); the
job is ``waiting``, which no concurrency limit counts. An answer (``job.input_provided``, which
the gateway checked against the question's schema) queues it again with the answer appended to
``answers``, and it is dispatched as a new attempt that runs on from what its runner saved. A
waiting job whose question expires fails; the expiry is a row, so a restart changes nothing.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from puras_common.errors import while_away
from puras_common.events import JobInputProvided
from puras_common.events.jobs import FailedPayload, InputRequestedPayload
from puras_common.logging import get_logger
from puras_common.outbox import Outbox, UnitOfWork

from puras_scheduler.tree import fail

log = get_logger("puras_scheduler.input_requests")


def asked(
    question: InputRequestedPayload, *, answered: int, now: datetime
) -> InputRequestedPayload:
    """The question as the job's event shows it: numbered after the answers the job already
    has, with the moment it expires."""
    return question.model_copy(
        update={
            "number": answered + 1,
            "expires_at": now + timedelta(seconds=question.timeout_seconds),
        }
    )


async def record_questions(
    uow: UnitOfWork, questions: list[tuple[Any, InputRequestedPayload]]
) -> None:
    """Keep each waiting job's question and expiry (``(job_id, question)``)."""
    await uow.conn.executemany(
        "UPDATE jobs SET input_request = $2, input_expires_at = $3 WHERE id = $1",
        [(job_id, q.model_dump(mode="json"), q.expires_at) for job_id, q in questions],
    )


async def answer(uow: UnitOfWork, event: JobInputProvided) -> bool:
    """Queue the waiting job with its answer; False when it was not waiting for this question
    (answered already, timed out, cancelled)."""
    queued = await uow.conn.fetchval(
        """UPDATE jobs SET status = 'queued', input_request = NULL, input_expires_at = NULL,
                          answers = answers || jsonb_build_array($3::jsonb)
           WHERE id = $1 AND status = 'waiting' AND input_request->>'request_id' = $2
           RETURNING id""",
        event.job_id,
        str(event.payload.request_id),
        event.payload.answer,
    )
    return queued is not None


_EXPIRED = """
SELECT id, workspace_id, attempt, input_request FROM jobs
WHERE status = 'waiting' AND input_expires_at <= now()
ORDER BY input_expires_at
LIMIT 100
FOR UPDATE SKIP LOCKED
"""


class InputTimeouts:
    """Fails the waiting jobs whose question went unanswered past its timeout."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def run(self, *, interval: float = 1.0) -> None:
        while True:
            await while_away(self.sweep, what="input timeouts")
            await asyncio.sleep(interval)

    async def sweep(self) -> int:
        """Fail every expired waiting job; returns how many."""
        async with self.outbox.transaction() as uow:
            rows = await uow.conn.fetch(_EXPIRED)
            for row in rows:
                question = row["input_request"] or {}
                await uow.conn.execute(
                    """UPDATE jobs SET status = 'failed', finished_at = now(),
                                       input_request = NULL, input_expires_at = NULL
                       WHERE id = $1""",
                    row["id"],
                )
                await fail(
                    uow,
                    row,
                    FailedPayload(
                        attempt=row["attempt"],
                        reason="timeout",
                        error=(
                            f"no input arrived within {question.get('timeout_seconds')} s: "
                            f"question {question.get('number')} went unanswered"
                        ),
                        error_detail={
                            "request_id": question.get("request_id"),
                            "timeout_seconds": question.get("timeout_seconds"),
                            "expires_at": question.get("expires_at"),
                        },
                    ),
                )
        if rows:
            log.info("failed jobs whose question went unanswered", count=len(rows))
        return len(rows)
