"""What a key may do beyond being valid: the fences around each request and each submit.

* Publishable keys (``puras_pub_…``, shipped inside apps) may only submit jobs, read the jobs
  they submitted, and upload files to pass as job inputs (an app has no other way to hand a job
  a photo larger than the 1 MiB body); anything else is 403.
* At submit: a key's skill allowlist (403 ``skill_not_allowed`` naming the skill), its daily
  spend cap over the UTC day (429 ``spend_cap_reached`` with ``Retry-After`` until midnight UTC),
  and the workspace's credit (402 ``insufficient_credits`` when the balance is 0 or below).
* ``last_used_at`` is written at most once a minute per key, not on every request.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from fastapi import Request
from puras_common.api import ApiError, ErrorCode
from puras_common.ids import parse_id
from puras_common.money import format_usd

from puras_gateway import ledger

if TYPE_CHECKING:
    from puras_gateway.auth import Principal
    from puras_gateway.catalog import ResolvedSkill
    from puras_gateway.context import Gateway

LAST_USED_RESOLUTION: Final = timedelta(minutes=1)
"""How stale ``last_used_at`` may be: one write per key per minute at most."""

_SUBMIT: Final = re.compile(r"^/v1/jobs/?$")
_UPLOAD: Final = re.compile(r"^/v1/drive/upload/?$")
_READ_JOB: Final = re.compile(r"^/v1/jobs/(?P<job_id>[^/]+)(?:/(?:events|stream|usage))?/?$")


async def guard(request: Request, gw: Gateway, who: Principal, *, last_used_at: datetime | None) -> None:
    """Called for every authenticated request: the publishable-key fence and ``last_used_at``."""
    await _touch(gw, who, last_used_at)
    if who.kind == "publishable":
        await _publishable_may(request, gw, who)


async def _touch(gw: Gateway, who: Principal, last_used_at: datetime | None) -> None:
    if last_used_at is not None and datetime.now(UTC) - last_used_at < LAST_USED_RESOLUTION:
        return
    await gw.db.execute(
        """UPDATE api_keys SET last_used_at = now()
           WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""",
        who.key_id,
    )


async def _publishable_may(request: Request, gw: Gateway, who: Principal) -> None:
    method, path = request.method, request.url.path
    if method == "POST" and (_SUBMIT.match(path) or _UPLOAD.match(path)):
        return
    read = _READ_JOB.match(path) if method in ("GET", "HEAD") else None
    if read is None:
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"a publishable key may only submit jobs, read the jobs it submitted and upload files; "
            f"{method} {path} needs a secret key",
        )
    job_id = parse_id(read.group("job_id"))
    if job_id is None:
        return  # the route answers 404
    owner = await gw.db.fetchrow(
        "SELECT key_id FROM jobs WHERE id = $1 AND workspace_id = $2", job_id, who.workspace_id
    )
    if owner is not None and owner["key_id"] != who.key_id:
        raise ApiError(ErrorCode.FORBIDDEN, f"job {job_id} was not submitted with this publishable key")


async def admit(gw: Gateway, who: Principal, skill: ResolvedSkill) -> None:
    """The submit-time fences, in order: allowlist (403), daily cap (429), credit (402)."""
    await _allowed(gw, who, skill)
    now = datetime.now(UTC)
    if who.daily_cap_micros is not None:
        spent = await ledger.spent_today(gw.db, who.key_id, now)
        if spent >= who.daily_cap_micros:
            raise SpendCapReached(spent=spent, cap=who.daily_cap_micros, now=now)
    balance, pending = await ledger.available_micros(gw.db, who.workspace_id)
    if balance + pending <= 0:
        raise ApiError(
            ErrorCode.INSUFFICIENT_CREDITS,
            f"workspace {who.workspace_slug!r} has no credit: its balance is {balance} micros "
            f"(${format_usd(balance)}); jobs are accepted while it is above 0. "
            f"An operator can add credit with `puras admin grant {who.workspace_slug} --usd 5`",
            details={"balance_micros": balance, "pending_grants_micros": pending},
        )


async def _allowed(gw: Gateway, who: Principal, skill: ResolvedSkill) -> None:
    if who.allowed_skills is None:
        return
    names = {skill.name, f"{skill.skillpack_slug}/{skill.name}"}
    if any(entry.count("/") == 2 for entry in who.allowed_skills):
        owner = await gw.db.fetchval("SELECT slug FROM workspaces WHERE id = $1", skill.owner_workspace_id)
        names.add(f"{owner}/{skill.skillpack_slug}/{skill.name}")
    if names.isdisjoint(who.allowed_skills):
        raise ApiError(
            ErrorCode.SKILL_NOT_ALLOWED,
            f"this key may not run skill {skill.skillpack_slug}/{skill.name}; "
            f"it may run: {', '.join(who.allowed_skills)}",
            details=[{"pointer": "/skill", "message": f"{skill.skillpack_slug}/{skill.name} is not in the key's allowed_skills"}],
        )


class SpendCapReached(ApiError):
    """429: the key spent its daily cap; it may submit again after midnight UTC."""

    def __init__(self, *, spent: int, cap: int, now: datetime) -> None:
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        retry_after = max(1, math.ceil((midnight - now).total_seconds()))
        super().__init__(
            ErrorCode.SPEND_CAP_REACHED,
            f"this key spent {spent} micros (${format_usd(spent)}) today (UTC); its daily cap is "
            f"{cap} micros (${format_usd(cap)}). It resets at {midnight.isoformat()}, in {retry_after} s",
            details={"spent_micros": spent, "daily_cap_micros": cap, "resets_at": midnight.isoformat()},
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after
