"""What a key may do beyond being valid: the fences around each request and each submit.

* Publishable keys (``puras_pub_…``, shipped inside apps) may only submit jobs, read the jobs
  they submitted (any other job is 404, as if it did not exist), answer their questions (their
  end user is the human in the loop) and send their end users' feedback on them, read the
  catalogue entries of the skills they may run (an app renders its forms from them), and upload
  files to pass as job inputs (an app has no other way to hand a job a photo larger than the
  1 MiB body); anything else is 403.
* At submit: a key's skill allowlist (403 ``skill_not_allowed`` naming the skill), its daily
  spend cap over the UTC day (429 ``spend_cap_reached`` with ``Retry-After`` until midnight UTC),
  and the workspace's credit (402 ``insufficient_credits`` when the balance is 0 or below).
* ``last_used_at`` is written at most once a minute per key, not on every request.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

from fastapi import Request
from puras_common.api import ApiError, ErrorCode
from puras_common.ids import parse_id
from puras_common.money import format_usd

from puras_gateway import jobs, keys, ledger, outputs, workspaces
from puras_gateway.catalog import ResolvedSkill
from puras_gateway.context import Gateway
from puras_gateway.keys import Principal

LAST_USED_RESOLUTION: Final = timedelta(minutes=1)
"""How stale ``last_used_at`` may be: one write per key per minute at most."""

_SUBMIT: Final = re.compile(r"^/v1/jobs/?$")
_UPLOAD: Final = re.compile(r"^/v1/drive/upload/?$")
_SKILLS: Final = re.compile(r"^/v1/skills/?$")
_READ_JOB: Final = re.compile(r"^/v1/jobs/(?P<job_id>[^/]+)(?:/(?:events|stream|usage))?/?$")
_FEEDBACK: Final = re.compile(r"^/v1/jobs/(?P<job_id>[^/]+)/feedback/?$")
_ANSWER: Final = re.compile(r"^/v1/jobs/(?P<job_id>[^/]+)/input/?$")


async def guard(
    request: Request, gw: Gateway, who: Principal, *, last_used_at: datetime | None
) -> None:
    """Called for every request with a key: the publishable-key fence and ``last_used_at``."""
    await _touch(gw, who, last_used_at)
    if who.kind == "publishable":
        assert who.key_id is not None
        outputs.read_by_publishable_key(who.key_id)
        await _publishable_may(request, gw, who)


async def _touch(gw: Gateway, who: Principal, last_used_at: datetime | None) -> None:
    if who.key_id is None:
        return
    if last_used_at is not None and datetime.now(UTC) - last_used_at < LAST_USED_RESOLUTION:
        return
    await keys.touch(gw.db, who.key_id)


async def _publishable_may(request: Request, gw: Gateway, who: Principal) -> None:
    method, path = request.method, request.url.path
    if method == "POST" and (_SUBMIT.match(path) or _UPLOAD.match(path)):
        return
    if method in ("GET", "HEAD") and _SKILLS.match(path):
        return  # the route lists only the skills the key may run
    own_job = _READ_JOB.match(path) if method in ("GET", "HEAD") else None
    if method == "POST":
        own_job = _FEEDBACK.match(path) or _ANSWER.match(path)
    if own_job is None:
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"a publishable key may only submit jobs, read the jobs it submitted, answer their "
            f"questions and send feedback on them, read the catalogue of its skills and upload "
            f"files; "
            f"{method} {path} needs a secret key",
        )
    job_id = parse_id(own_job.group("job_id"))
    if job_id is None:
        return  # the route answers 404
    owner = await jobs.submitting_key(gw.db, job_id, who.workspace_id)
    if owner is not None and owner["key_id"] != who.key_id:
        # The same answer as for a job that does not exist: a key shipped in an app learns
        # nothing about the workspace's other jobs, not even that they exist.
        raise ApiError(ErrorCode.NOT_FOUND, f"job {own_job.group('job_id')} not found")


def may_run(
    allowed_skills: tuple[str, ...] | None, *, workspace: str, skillpack: str, skill: str
) -> bool:
    """Whether an allowlist (None: every skill) names a skill by any of its three addresses."""
    if allowed_skills is None:
        return True
    names = {skill, f"{skillpack}/{skill}", f"{workspace}/{skillpack}/{skill}"}
    return not names.isdisjoint(allowed_skills)


async def admit(gw: Gateway, who: Principal, skill: ResolvedSkill) -> None:
    """The submit-time fences, in order: allowlist (403), daily cap (429), credit (402)."""
    await _allowed(gw, who, skill)
    await _within_daily_cap(gw, who.key_id, who.daily_cap_micros)
    await _has_credit(
        gw,
        who.workspace_id,
        holder=f"workspace {who.workspace_slug!r}",
        advice="jobs are accepted while it is above 0. "
        f"An operator can add credit with `puras admin grant {who.workspace_slug} --usd 5`",
    )


async def check_allowed(gw: Gateway, who: Principal, skill: ResolvedSkill) -> None:
    """403 ``skill_not_allowed`` when the key's allowlist does not name the skill (a schedule
    is checked against it when made, and each of its jobs again when submitted)."""
    await _allowed(gw, who, skill)


async def admit_subagent(gw: Gateway, *, workspace_id: UUID, key_id: UUID | None) -> None:
    """A subagent's fences: the workspace's credit (402), then the daily cap of ``key_id``, the
    key its tree started with (429). The parent chose what to run, so no allowlist applies."""
    await _has_credit(
        gw,
        workspace_id,
        holder="the workspace",
        advice="a subagent is a job and needs credit to start",
    )
    if key_id is not None:
        await _within_daily_cap(gw, key_id, await keys.daily_cap(gw.db, key_id))


async def _within_daily_cap(gw: Gateway, key_id: UUID | None, cap: int | None) -> None:
    if cap is None or key_id is None:
        return
    now = datetime.now(UTC)
    spent = await ledger.spent_today(gw.db, key_id, now)
    if spent >= cap:
        raise SpendCapReached(spent=spent, cap=cap, now=now)


async def _has_credit(gw: Gateway, workspace_id: UUID, *, holder: str, advice: str) -> None:
    balance, pending = await ledger.available_micros(gw.db, workspace_id)
    if balance + pending <= 0:
        raise NoCredit(balance=balance, pending=pending, holder=holder, advice=advice)


async def _allowed(gw: Gateway, who: Principal, skill: ResolvedSkill) -> None:
    if who.allowed_skills is None:
        return
    owner = ""
    if any(entry.count("/") == 2 for entry in who.allowed_skills):
        owner = await workspaces.slug_of(gw.db, skill.owner_workspace_id) or ""
    if not may_run(
        who.allowed_skills, workspace=owner, skillpack=skill.skillpack_slug, skill=skill.name
    ):
        raise ApiError(
            ErrorCode.SKILL_NOT_ALLOWED,
            f"this key may not run skill {skill.skillpack_slug}/{skill.name}; "
            f"it may run: {', '.join(who.allowed_skills)}",
            details=[
                {
                    "pointer": "/skill",
                    "message": f"{skill.skillpack_slug}/{skill.name} is not in the key's allowed_skills",
                }
            ],
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
            details={
                "spent_micros": spent,
                "daily_cap_micros": cap,
                "resets_at": midnight.isoformat(),
            },
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class NoCredit(ApiError):
    """402: the workspace's balance, with grants not yet posted, is 0 or below."""

    def __init__(self, *, balance: int, pending: int, holder: str, advice: str) -> None:
        super().__init__(
            ErrorCode.INSUFFICIENT_CREDITS,
            f"{holder} has no credit: its balance is {balance} micros (${format_usd(balance)}); "
            + advice,
            details={"balance_micros": balance, "pending_grants_micros": pending},
        )
        self.balance_micros = balance
        self.pending_grants_micros = pending
