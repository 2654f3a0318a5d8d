"""Budgets as holds: the protocol between the callers of paid upstreams and billing.

Before a model or media call, its caller *holds* the call's maximum cost against the
workspace's balance and the key's daily cap (``svc.billing.hold``). Billing grants the hold only
while ``balance − open holds`` and ``cap − spent today − open holds`` both cover it, so holds
taken at the same moment by many jobs can never add up to more than there is. The call's
``usage.recorded`` names the hold, and billing ends the hold in the transaction that charges the
real cost: that is the settlement. A call that made no usage releases its hold
(``svc.billing.release``); a hold nobody settles or releases (its runner crashed) expires.

A hold may be granted for less than its maximum, down to ``min_micros``: a model call then asks
the model for fewer output tokens, so what it can cost still fits what was held.

A refusal that only other calls' open holds cause (the balance, or what the cap leaves, covers
``min_micros`` by itself) is asked again, for a bounded while: those holds end as their calls are
charged, usually within moments, and a workspace with money left should not fail a job because
many of its calls were in flight at once. A refusal that no settlement can lift fails at once.
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal
from uuid import UUID

import nats.errors
from nats.aio.client import Client as NATS
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from puras_common import subjects
from puras_common.errors import PLATFORM_RETRY_SECONDS, backoff
from puras_common.ids import new_id
from puras_common.logging import get_logger

log = get_logger("puras_common.budgets")

HOLD: Final = subjects.svc("billing", "hold")
RELEASE: Final = subjects.svc("billing", "release")

SETTLE_WAIT_SECONDS: Final = 30.0
"""How long a hold refused only for other calls' open holds is asked again."""

RefusalCode = Literal["insufficient_credits", "spend_cap_reached"]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True)


class HoldRequest(_Message):
    hold_id: UUID
    workspace_id: UUID
    job_id: UUID | None = None
    key_id: UUID | None = None
    daily_cap_micros: int | None = Field(default=None, ge=0)
    """The key's cap, as the job was submitted under; None: no cap."""
    min_micros: int = Field(ge=0)
    max_micros: int = Field(ge=0)
    ttl_seconds: int = Field(ge=1, le=24 * 3600)
    """When the hold lapses if nobody settles or releases it."""
    what: str = Field(default="", max_length=200)
    """The call, for messages (``claude/sonnet-4-7``)."""


class HoldReply(_Message):
    granted: bool
    amount_micros: int = 0
    code: RefusalCode | None = None
    message: str = ""
    balance_micros: int = 0
    held_micros: int = 0
    """Open holds of the workspace (or of the key, for a cap refusal) besides this one."""
    spent_today_micros: int | None = None


class ReleaseRequest(_Message):
    hold_id: UUID


def _settling_may_grant(request: HoldRequest, reply: HoldReply) -> bool:
    """Whether the refusal is owed to open holds alone: with none of them, the call would fit."""
    if reply.held_micros <= 0:
        return False
    if reply.code == "spend_cap_reached":
        cap = request.daily_cap_micros or 0
        return cap - (reply.spent_today_micros or 0) >= max(request.min_micros, 1)
    return reply.balance_micros >= max(request.min_micros, 1)


class HoldRefused(Exception):
    """Billing would not hold the call's cost: no credit, or the key's cap is reached."""

    def __init__(self, reply: HoldReply) -> None:
        super().__init__(reply.message)
        self.reply = reply
        self.code: RefusalCode = reply.code or "insufficient_credits"


class BudgetClient:
    """A caller's side: holds retried while billing is away (a restart), releases best-effort."""

    def __init__(
        self,
        nc: NATS,
        *,
        timeout: float = 5.0,
        give_up_after: float = PLATFORM_RETRY_SECONDS,
        settle_wait: float = SETTLE_WAIT_SECONDS,
    ) -> None:
        self.nc = nc
        self.timeout = timeout
        self.give_up_after = give_up_after
        self.settle_wait = settle_wait

    async def hold(
        self,
        *,
        workspace_id: UUID,
        min_micros: int,
        max_micros: int,
        ttl_seconds: int,
        job_id: UUID | None = None,
        key_id: UUID | None = None,
        daily_cap_micros: int | None = None,
        what: str = "",
        settle_wait: float | None = None,
    ) -> tuple[UUID, int]:
        """Hold between ``min_micros`` and ``max_micros``; the hold's id and amount. Raises
        :class:`HoldRefused` when not even ``min_micros`` can be held (after waiting up to
        ``settle_wait`` seconds, the client's by default, for other calls' holds to settle when
        that could lift the refusal), and ``TimeoutError`` when billing does not answer for
        ``give_up_after`` seconds."""
        request = HoldRequest(
            hold_id=new_id(),
            workspace_id=workspace_id,
            job_id=job_id,
            key_id=key_id,
            daily_cap_micros=daily_cap_micros,
            min_micros=min_micros,
            max_micros=max(min_micros, max_micros),
            ttl_seconds=max(1, min(ttl_seconds, 24 * 3600)),
            what=what[:200],
        )
        loop = asyncio.get_running_loop()
        settled_by = loop.time() + (self.settle_wait if settle_wait is None else settle_wait)
        attempt = 0
        while True:
            reply = await self._ask(request)
            if reply.granted:
                return request.hold_id, reply.amount_micros
            if not _settling_may_grant(request, reply) or loop.time() >= settled_by:
                raise HoldRefused(reply)
            # Refused ids are not stored, so the same request may be asked again.
            await asyncio.sleep(min(backoff(attempt, base=0.05, cap=1.0), settled_by - loop.time()))
            attempt += 1

    async def _ask(self, request: HoldRequest) -> HoldReply:
        body = request.model_dump_json().encode()
        deadline = asyncio.get_running_loop().time() + self.give_up_after
        attempt = 0
        while True:
            try:
                msg = await self.nc.request(HOLD, body, timeout=self.timeout)
                return HoldReply.model_validate_json(msg.data)
            except (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                ValidationError,
            ) as exc:
                # The same hold id again: billing grants a hold id once, so a retry after a
                # lost answer is answered with the hold already taken.
                if asyncio.get_running_loop().time() >= deadline:
                    raise TimeoutError(f"billing did not answer a hold: {exc!r}") from None
                delay = backoff(attempt, base=0.1, cap=2.0)
                log.warning("billing did not answer a hold; retrying", error=repr(exc))
                attempt += 1
                await asyncio.sleep(delay)

    async def release(self, hold_id: UUID) -> None:
        """End a hold whose call made no usage (it lapses by itself if this is lost)."""
        try:
            await self.nc.request(
                RELEASE, ReleaseRequest(hold_id=hold_id).model_dump_json().encode(), timeout=2.0
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            log.warning("billing did not answer a release", hold_id=str(hold_id), error=repr(exc))
