"""Budget holds (see :mod:`puras_common.budgets`): granted only while what is left covers them.

A hold is decided under the workspace's balance row lock, the same lock every charge takes, so
concurrent holds of one workspace (and so of each of its keys) are decided one after another
against the balance as the charges left it: their sum never exceeds what there was.

    left in the workspace = balance − open holds of the workspace
    left under the cap    = cap − the key's charges since midnight UTC − the key's open holds

The grant is the most of ``max_micros`` that both leave, refused below ``min_micros``. A hold
id is granted once: a request repeated after a lost answer gets the hold already taken.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from nats.aio.msg import Msg
from puras_common.budgets import HoldReply, HoldRequest, ReleaseRequest
from puras_common.logging import get_logger
from puras_common.money import format_usd
from pydantic import ValidationError

log = get_logger("puras_billing.holds")

_OPEN = "ended_at IS NULL AND expires_at > now()"


class Holds:
    """Serves ``svc.billing.hold`` and ``svc.billing.release`` from billing's own tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def hold(self, req: HoldRequest) -> HoldReply:
        async with self.pool.acquire() as conn, conn.transaction():
            taken = await conn.fetchval(
                "SELECT amount_micros FROM holds WHERE hold_id = $1", req.hold_id
            )
            if taken is not None:
                return HoldReply(granted=True, amount_micros=taken)
            balance = await conn.fetchval(
                "SELECT balance_micros FROM balances WHERE workspace_id = $1 FOR UPDATE",
                req.workspace_id,
            )
            balance = balance or 0
            held = await conn.fetchval(
                f"SELECT coalesce(sum(amount_micros), 0) FROM holds WHERE workspace_id = $1 AND {_OPEN}",
                req.workspace_id,
            )
            left = balance - held
            if left < req.min_micros or left <= 0:
                return HoldReply(
                    granted=False,
                    code="insufficient_credits",
                    message=(
                        f"insufficient_credits: {req.what or 'the call'} may cost up to "
                        f"{req.min_micros} micros; the workspace's balance is {balance} micros "
                        f"(${format_usd(balance)}) with {held} micros held by calls in flight"
                    ),
                    balance_micros=balance,
                    held_micros=held,
                )
            grant = min(req.max_micros, left)
            spent: int | None = None
            if req.key_id is not None and req.daily_cap_micros is not None:
                day = await conn.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
                spent = await conn.fetchval(
                    """SELECT coalesce(sum(billed_micros), 0) FROM usage
                       WHERE key_id = $1 AND created_at >= ($2::date)::timestamp AT TIME ZONE 'UTC'""",
                    req.key_id,
                    day,
                )
                key_held = await conn.fetchval(
                    f"SELECT coalesce(sum(amount_micros), 0) FROM holds WHERE key_id = $1 AND day = $2 AND {_OPEN}",
                    req.key_id,
                    day,
                )
                under_cap = req.daily_cap_micros - spent - key_held
                if under_cap < req.min_micros or under_cap <= 0:
                    return HoldReply(
                        granted=False,
                        code="spend_cap_reached",
                        message=(
                            f"spend_cap_reached: {req.what or 'the call'} may cost up to "
                            f"{req.min_micros} micros; the key spent {spent} micros today (UTC) "
                            f"and {key_held} micros are held by calls in flight, against its daily "
                            f"cap of {req.daily_cap_micros} micros. It resets at midnight UTC"
                        ),
                        balance_micros=balance,
                        held_micros=key_held,
                        spent_today_micros=spent,
                    )
                grant = min(grant, under_cap)
            await conn.execute(
                """INSERT INTO holds (hold_id, workspace_id, job_id, key_id, day, amount_micros, expires_at)
                   VALUES ($1, $2, $3, $4, (now() AT TIME ZONE 'UTC')::date, $5,
                           now() + make_interval(secs => $6))""",
                req.hold_id,
                req.workspace_id,
                req.job_id,
                req.key_id,
                grant,
                float(req.ttl_seconds),
            )
        return HoldReply(
            granted=True,
            amount_micros=grant,
            balance_micros=balance,
            held_micros=held,
            spent_today_micros=spent,
        )

    async def release(self, req: ReleaseRequest) -> None:
        await self.pool.execute(
            "UPDATE holds SET ended_at = now() WHERE hold_id = $1 AND ended_at IS NULL",
            req.hold_id,
        )

    async def serve_hold(self, msg: Msg) -> None:
        await self._serve(msg, HoldRequest, self.hold)

    async def serve_release(self, msg: Msg) -> None:
        async def release(req: ReleaseRequest) -> dict[str, bool]:
            await self.release(req)
            return {"released": True}

        await self._serve(msg, ReleaseRequest, release)

    async def _serve(self, msg: Msg, model: Any, decide: Any) -> None:
        try:
            request = model.model_validate_json(msg.data)
        except ValidationError as exc:
            await msg.respond(orjson.dumps({"error": str(exc)}))
            return
        try:
            reply = await decide(request)
        except (asyncpg.PostgresError, OSError) as exc:
            # No answer: the caller retries (the hold id makes that safe) until we are back.
            log.warning("could not decide a budget request", error=repr(exc))
            return
        body = (
            reply.model_dump_json().encode()
            if isinstance(reply, HoldReply)
            else orjson.dumps(reply)
        )
        await msg.respond(body)


async def prune(pool: asyncpg.Pool, *, older_than_days: int = 3) -> int:
    """Drop holds long ended or lapsed (they no longer count for anything)."""
    status = await pool.execute(
        "DELETE FROM holds WHERE created_at < now() - make_interval(days => $1)", older_than_days
    )
    return int(status.split()[-1])
