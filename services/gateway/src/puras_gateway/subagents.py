"""Subagents: a running job starts a child job and waits for it (``puras.subagent.run``).

A target is a declared skill (``skill`` in the caller's own skillpack, ``skillpack/skill`` in
the caller's workspace, ``workspace/skillpack/skill`` when public; ``version`` pins its
deployment), a markdown file of the caller's bundle (``references/foo.md``, relative to the
caller's skill folder), or an inline ``prompt``. The last two run as agents in the caller's own
deployment with the built-in tools and a free-form ``set_output``.

The child is a real job whose ``parent_job_id`` is the caller, billed to the caller's workspace
and counted in the caller's ``total_cost_micros``. The parent's history gets a ``subagent``
event naming the child. Trees are bounded: ``PURAS_GATEWAY_SUBAGENT_MAX_DEPTH`` levels and
``PURAS_GATEWAY_SUBAGENT_MAX_CHILDREN`` children per job. Cancelling (or the end of) a parent
cancels its children; the scheduler carries that down the tree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson
from puras_common.api import ApiError, ErrorCode, JobOut, JobStatus
from puras_common.events import JobKind, JobSpec, JobSubagentStarted, JobSubmitted, SubagentSpec
from puras_common.events.jobs import SubagentStartedPayload
from puras_common.ids import new_id
from puras_common.money import format_usd
from puras_common.payloads import payload_key
from puras_common.schemas import validate
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway import catalog, jobs, ledger
from puras_gateway.context import Gateway
from puras_gateway.fences import SpendCapReached
from puras_gateway.jobcalls import TERMINAL, JobCaller

MAX_PROMPT_CHARS: Final = 200_000
"""An inline subagent's system prompt, at most (characters)."""
MAX_TARGET_CHARS: Final = 1024
DEFAULT_TIMEOUT_SECONDS: Final = 900
MAX_TIMEOUT_SECONDS: Final = 3600


class SubagentIn(BaseModel):
    """``POST /v1/subagents``: exactly one of ``target`` and ``prompt``."""

    model_config = ConfigDict(extra="forbid")

    target: str | None = Field(default=None, min_length=1, max_length=MAX_TARGET_CHARS)
    inputs: dict[str, Any] = Field(default_factory=dict)
    prompt: str | None = Field(default=None, min_length=1)
    version: int | None = Field(default=None, ge=1)


def _invalid(message: str, pointer: str) -> ApiError:
    return ApiError(ErrorCode.INVALID_REQUEST, message, details=[{"pointer": pointer, "message": message}])


def markdown_path(target: str, skill_name: str) -> str:
    """``references/foo.md`` of skill ``s`` → ``skills/s/references/foo.md``, bundle-relative;
    400 for a path that would leave the bundle."""
    if target.startswith("/") or "\\" in target or any(ord(c) < 32 for c in target):
        raise _invalid(f"target {target!r} must be a path relative to the skill's folder, with '/' between folders", "/target")
    parts = ["skills", skill_name]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise _invalid(f"target {target!r} leaves the bundle", "/target")
            parts.pop()
        else:
            parts.append(part)
    if not parts or not parts[-1].endswith(".md"):
        raise _invalid(f"target {target!r} does not name a markdown file", "/target")
    return "/".join(parts)


async def depth_of(gw: Gateway, job_id: UUID) -> int:
    """How many ancestors a job has (a job submitted by an app: 0)."""
    return await gw.db.fetchval(
        """WITH RECURSIVE up(id, parent, depth) AS (
               SELECT id, parent_job_id, 0 FROM jobs WHERE id = $1
               UNION ALL
               SELECT j.id, j.parent_job_id, up.depth + 1 FROM jobs j JOIN up ON j.id = up.parent WHERE up.depth < 1000
           ) SELECT max(depth) FROM up""",
        job_id,
    ) or 0


async def _admit(gw: Gateway, caller: JobCaller) -> None:
    """The workspace's credit (402) and the daily cap of the key the tree started with (429)."""
    balance, pending = await ledger.available_micros(gw.db, caller.workspace_id)
    if balance + pending <= 0:
        raise ApiError(
            ErrorCode.INSUFFICIENT_CREDITS,
            f"the workspace has no credit: its balance is {balance} micros (${format_usd(balance)}); a subagent is a job and needs credit to start",
            details={"balance_micros": balance, "pending_grants_micros": pending},
        )
    if caller.key_id is None:
        return
    cap = await gw.db.fetchval("SELECT daily_cap_micros FROM api_keys WHERE id = $1", caller.key_id)
    if cap is not None:
        now = datetime.now(UTC)
        spent = await ledger.spent_today(gw.db, caller.key_id, now)
        if spent >= cap:
            raise SpendCapReached(spent=spent, cap=cap, now=now)


async def _caller_skill(gw: Gateway, caller: JobCaller) -> Any:
    row = await gw.db.fetchrow(
        "SELECT entrypoint, model, timeout_seconds FROM skills WHERE deployment_id = $1 AND name = $2",
        caller.deployment_id, caller.skill_name,
    )
    if row is None:
        raise ApiError(ErrorCode.CONFLICT, f"skill {caller.skill_name!r} of deployment {caller.deployment_id} is no longer in the catalogue")
    return row


def _timeout(seconds: int | None) -> int:
    return min(seconds or DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS)


async def plan(gw: Gateway, caller: JobCaller, body: SubagentIn) -> tuple[JobSpec, SubagentStartedPayload]:
    """What the child runs (without its ids), or a 4xx saying why it cannot."""
    if (body.target is None) == (body.prompt is None):
        raise _invalid("pass exactly one of target (a skill or a markdown file) and prompt", "/target" if body.target is None else "/prompt")
    if body.prompt is not None and len(body.prompt) > MAX_PROMPT_CHARS:
        raise _invalid(f"prompt has {len(body.prompt)} characters; the limit is {MAX_PROMPT_CHARS}", "/prompt")
    markdown = body.target is not None and body.target.endswith(".md")
    if body.version is not None and (body.prompt is not None or markdown):
        raise _invalid("version pins a declared skill; an inline prompt or a markdown file always runs on the caller's own deployment", "/version")
    common = dict(parent_job_id=caller.job_id, key_id=caller.key_id, inputs=body.inputs)
    if body.target is not None and not markdown:
        return await _declared(gw, caller, body, common)
    skill = await _caller_skill(gw, caller)
    if markdown:
        assert body.target is not None
        sub = SubagentSpec(kind="markdown", path=markdown_path(body.target, caller.skill_name), model=skill["model"])
        target, kind = body.target, "markdown"
    else:
        sub = SubagentSpec(kind="prompt", prompt=body.prompt, model=skill["model"])
        target, kind = "prompt", "prompt"
    spec = JobSpec(
        skill_name=caller.skill_name, skillpack_id=caller.skillpack_id, skillpack_slug=caller.skillpack_slug,
        owner_workspace_id=caller.owner_workspace_id, deployment_id=caller.deployment_id, version=caller.version,
        kind=JobKind.AGENT, entrypoint=skill["entrypoint"], timeout_seconds=_timeout(skill["timeout_seconds"]),
        subagent=sub, **common,
    )
    started = SubagentStartedPayload(child_job_id=caller.job_id, kind=kind, target=target, skill_name=caller.skill_name,  # type: ignore[arg-type]
                                     skillpack=caller.skillpack_slug, version=caller.version)
    return spec, started


async def _declared(gw: Gateway, caller: JobCaller, body: SubagentIn, common: dict[str, Any]) -> tuple[JobSpec, SubagentStartedPayload]:
    assert body.target is not None
    try:
        address = catalog.parse_address(body.target, skillpack=None)
    except ApiError as exc:
        raise _invalid(exc.message.replace("skill ", "target ", 1), "/target") from None
    if address.skillpack is None:
        # A bare name is a skill of the caller's own skillpack, wherever that lives.
        owner = await gw.db.fetchval("SELECT slug FROM workspaces WHERE id = $1", caller.owner_workspace_id)
        address = catalog.Address(owner or str(caller.owner_workspace_id), caller.skillpack_slug, address.skill)
    async with gw.db.acquire() as conn:
        skill = await gw.skills.resolve(
            conn, caller_workspace_id=caller.workspace_id, address=address, default_skillpack=caller.skillpack_slug, version=body.version,
        )
    if skill.input_schema is not None and (problems := validate(skill.input_schema, body.inputs, root=("inputs",))):
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            f"inputs do not match the input_schema of {skill.name!r}: {problems[0].message} at {problems[0].pointer}",
            details=problems,
        )
    spec = JobSpec(
        skill_name=skill.name, skillpack_id=skill.skillpack_id, skillpack_slug=skill.skillpack_slug,
        owner_workspace_id=skill.owner_workspace_id, deployment_id=skill.deployment_id, version=skill.version,
        kind=JobKind(skill.kind), entrypoint=skill.entrypoint, timeout_seconds=_timeout(skill.timeout_seconds), **common,
    )
    started = SubagentStartedPayload(child_job_id=caller.job_id, kind="skill", target=body.target, skill_name=skill.name,
                                     skillpack=skill.skillpack_slug, version=skill.version)
    return spec, started


async def submit(gw: Gateway, caller: JobCaller, body: SubagentIn) -> JobOut:
    """Queue the child; 4xx for a target that cannot run, or a tree past its bounds."""
    depth = await depth_of(gw, caller.job_id) + 1
    if depth > gw.settings.subagent_max_depth:
        raise _invalid(
            f"a subagent of job {caller.job_id} would be at depth {depth}; the limit is {gw.settings.subagent_max_depth} "
            "(PURAS_GATEWAY_SUBAGENT_MAX_DEPTH)", "/target",
        )
    spec, started = await plan(gw, caller, body)
    await _admit(gw, caller)
    child_id = new_id()
    if len(orjson.dumps(spec.inputs)) > gw.settings.inline_payload_bytes:
        ref = await gw.payloads.put(payload_key(caller.workspace_id, child_id, "inputs"), spec.inputs)
        spec = spec.model_copy(update={"inputs": None, "inputs_ref": ref})
    submitted = JobSubmitted.new(spec, producer="gateway", workspace_id=caller.workspace_id, job_id=child_id)
    notice = JobSubagentStarted.new(
        started.model_copy(update={"child_job_id": child_id}), producer="gateway", workspace_id=caller.workspace_id,
        job_id=caller.job_id, caused_by=submitted,
    )
    async with gw.outbox.transaction() as uow:
        # The parent's row, locked: a cancel or an end of the parent and this submit are serialised.
        parent = await uow.conn.fetchrow("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", caller.job_id)
        if parent is None or parent["status"] in TERMINAL:
            raise ApiError(ErrorCode.CONFLICT, f"job {caller.job_id} has ended; it cannot start subagents")
        children = await uow.conn.fetchval("SELECT count(*) FROM jobs WHERE parent_job_id = $1", caller.job_id)
        if children >= gw.settings.subagent_max_children:
            raise _invalid(
                f"job {caller.job_id} has started {children} subagents; the limit is {gw.settings.subagent_max_children} "
                "(PURAS_GATEWAY_SUBAGENT_MAX_CHILDREN)", "/target",
            )
        uow.emit(notice, submitted)  # the parent's notice first: it is on the stream before the child can run
        await jobs.fold(uow.conn, [(submitted, None)])
    workspace = await gw.db.fetchval("SELECT slug FROM workspaces WHERE id = $1", caller.workspace_id)
    return JobOut(
        id=child_id, status=JobStatus.QUEUED, skill_name=spec.skill_name, skillpack=spec.skillpack_slug, workspace=workspace,
        deployment_id=spec.deployment_id, version=spec.version, attempt=0, parent_job_id=caller.job_id,
        created_at=submitted.occurred_at,
    )
