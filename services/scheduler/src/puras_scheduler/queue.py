"""The queue's state, folded from job events and balance changes."""

from __future__ import annotations

from puras_common.bus import Delivery
from puras_common.events import (
    BalanceChanged,
    JobCancelled,
    JobCancelRequested,
    JobInputProvided,
    JobSubmitted,
)
from puras_common.events.jobs import CancelledPayload
from puras_common.outbox import UnitOfWork

from puras_scheduler import input_requests
from puras_scheduler.tree import end_children, orphaned


async def apply_job_event(uow: UnitOfWork, d: Delivery) -> None:
    conn, event = uow.conn, d.event
    if isinstance(event, JobSubmitted):
        await conn.execute(
            """INSERT INTO jobs (id, workspace_id, kind, spec, submitted_at, priority, key_id,
                                  daily_cap_micros)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (id) DO NOTHING""",
            event.job_id,
            event.workspace_id,
            event.payload.kind.value,
            event.payload.model_dump(mode="json"),
            event.occurred_at,
            event.payload.priority,
            event.payload.key_id,
            event.payload.daily_cap_micros,
        )
        parent = event.payload.parent_job_id
        if parent is not None and (why := await orphaned(uow, parent)) is not None:
            cancelled = await conn.fetchval(
                "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = $1 AND status = 'queued' RETURNING id",
                event.job_id,
            )
            if cancelled is not None:
                uow.emit(
                    JobCancelled.new(
                        CancelledPayload(attempt=None, reason=f"cancelled: {why}"),
                        producer="scheduler",
                        workspace_id=event.workspace_id,
                        job_id=event.job_id,
                        caused_by=event,
                    )
                )
    elif isinstance(event, JobCancelRequested):
        # Queued, or waiting for input (no runner holds it): cancelled here and now.
        was = await conn.fetchval("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", event.job_id)
        cancelled = await conn.fetchval(
            """UPDATE jobs SET status = 'cancelled', finished_at = now(), input_expires_at = NULL
               WHERE id = $1 AND status IN ('queued', 'waiting') RETURNING workspace_id""",
            event.job_id,
        )
        if cancelled is None:
            # Dispatched or running: the runner stops it; a claim after this refuses to start it.
            await conn.execute(
                """UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, $2)
                   WHERE id = $1 AND status IN ('dispatched', 'running')""",
                event.job_id,
                event.occurred_at,
            )
        else:
            uow.emit(
                JobCancelled.new(
                    CancelledPayload(attempt=None, reason=f"cancelled while {was}"),
                    producer="scheduler",
                    workspace_id=cancelled,
                    job_id=event.job_id,
                    caused_by=event,
                )
            )
        await end_children(uow, event.job_id, why=f"cancelled with its parent job {event.job_id}")
    elif isinstance(event, JobInputProvided):
        await input_requests.answer(uow, event)


async def apply_balance(uow: UnitOfWork, d: Delivery) -> bool:
    """Fold a balance change; True when it gave credit to a workspace that had none, the only
    change of balance that can let a queued job go."""
    event = d.event
    if not isinstance(event, BalanceChanged):
        return False
    credited: bool | None = await uow.conn.fetchval(
        """WITH before AS (SELECT balance_micros FROM balances WHERE workspace_id = $1)
           INSERT INTO balances (workspace_id, balance_micros, version) VALUES ($1, $2, $3)
           ON CONFLICT (workspace_id) DO UPDATE SET balance_micros = EXCLUDED.balance_micros,
                                                  version = EXCLUDED.version
           WHERE balances.version < EXCLUDED.version
           RETURNING balance_micros > 0
                     AND coalesce((SELECT balance_micros FROM before), 0) <= 0""",
        event.workspace_id,
        event.payload.balance_micros,
        event.payload.version,
    )
    return bool(credited)
