"""Publishing to JetStream until every message is acknowledged: the one retry loop behind both
the outbox relay and stateless producers (:func:`puras_common.bus.publish`).

Messages go out pipelined and in order, each with its event id as ``Nats-Msg-Id``; when an ack
is missing, publishing starts again from the first message not acknowledged, with backoff. The
server's duplicate window makes the repeats harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext

from puras_common import observability
from puras_common.envelope import Event
from puras_common.errors import TRANSIENT_ERRORS, backoff
from puras_common.logging import get_logger

log = get_logger("puras_common.publishing")


@dataclass(frozen=True)
class Outgoing:
    """One message: its subject, its body and the id of the event it carries."""

    subject: str
    body: bytes
    event_id: str
    headers: dict[str, str] | None = None
    """``Nats-Msg-Id`` and, when tracing, ``traceparent``; None: the id alone."""

    @classmethod
    def of(cls, event: Event) -> Outgoing:
        headers = observability.publish_headers(event.id, event.job_id, event.subject)
        return cls(event.subject, event.to_json(), str(event.id), headers)


async def publish_acknowledged(
    js: JetStreamContext,
    messages: Sequence[Outgoing],
    *,
    timeout: float,
    give_up_after: float | None = None,
    retry_send_errors: bool = True,
    **context: Any,
) -> list[Any]:
    """Publish ``messages`` until each is acknowledged; their acks, in order.

    ``timeout`` bounds the wait for one round of acks. ``give_up_after`` (seconds) turns endless
    retrying into a :class:`TimeoutError`. With ``retry_send_errors`` false, an error raised
    while sending (the connection is gone) propagates to the caller instead of being retried
    here. ``context`` is logged with each retry.
    """
    loop = asyncio.get_running_loop()
    deadline = None if give_up_after is None else loop.time() + give_up_after
    acks: list[Any] = []
    attempt = 0
    while len(acks) < len(messages):
        batch = messages[len(acks) :]
        failed_at: int | None
        error: BaseException | None
        try:
            futures = [
                await js.publish_async(
                    m.subject, m.body, headers=m.headers or {"Nats-Msg-Id": m.event_id}
                )
                for m in batch
            ]
        except TRANSIENT_ERRORS as exc:
            if not retry_send_errors:
                raise
            failed_at, error = 0, exc
        else:
            failed_at, error = await publish_acks(futures, timeout=timeout)
            if failed_at is None:
                return [*acks, *(f.result() for f in futures)]
            acks += [f.result() for f in futures[:failed_at]]
        failed = batch[failed_at]
        if deadline is not None and loop.time() > deadline:
            raise TimeoutError(f"could not publish {failed.subject}: {error!r}")
        delay = backoff(attempt, base=0.05, cap=2.0)
        log.warning(
            "publish failed; retrying",
            subject=failed.subject,
            event_id=failed.event_id,
            error=repr(error),
            retry_in=delay,
            **context,
        )
        attempt += 1
        await asyncio.sleep(delay)
    return acks


async def publish_acks(
    futures: list[asyncio.Future[Any]], *, timeout: float
) -> tuple[int | None, BaseException | None]:
    """Wait for pipelined publish acks: ``(None, None)`` when all arrived, else the index of the
    first message not acknowledged and why. Unfinished futures are cancelled."""
    if not futures:
        return None, None
    _done, pending = await asyncio.wait(futures, timeout=timeout)
    for future in pending:
        future.cancel()
    for index, future in enumerate(futures):
        if future in pending:
            return index, TimeoutError(f"no ack within {timeout}s")
        if (exc := future.exception()) is not None:
            return index, exc
    return None, None
