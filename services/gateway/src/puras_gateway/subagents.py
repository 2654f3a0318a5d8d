"""Subagents: a running job starts a child job and waits for it (``puras.subagent.run``).

A target is a declared skill (``skill`` in the caller's own skillpack, ``skillpack/skill`` in
the caller's workspace, ``workspace/skillpack/skill`` when public; ``version`` pins its
deployment), a markdown file of the caller's bundle (``references/foo.md``, relative to the
caller's skill folder), or an inline ``prompt``. The last two run as agents in the caller's own
deployment with the built-in tools and a free-form ``set_output``.

The child is a real job whose ``parent_job_id`` is the caller, billed to the caller's workspace
and counted in the caller's ``total_cost_micros``. The parent's history gets a ``subagent``
event naming the child. Trees are bounded: ``PURAS_GATEWAY_SUBAGENT_MAX_DEPTH`` levels and
``PURAS_GATEWAY_SUBAGENT_MAX_CHILDREN`` children per job, and
``PURAS_GATEWAY_SUBAGENT_MAX_DESCENDANTS`` subagents in all under one root job (a tree within
the first two bounds could still hold millions). Cancelling (or the end of) a parent
cancels its children; the scheduler carries that down the tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from puras_common.api import ApiError, ErrorCode, JobOut
from puras_common.envelope import Event
from puras_common.events import JobKind, JobSpec, JobSubagentStarted, JobSubmitted, SubagentSpec
from puras_common.events.jobs import SubagentStartedPayload
from puras_common.outbox import UnitOfWork
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway import catalog, fences, jobs, submission, workspaces
from puras_gateway.context import Gateway
from puras_gateway.jobcalls import JobCaller

MAX_PROMPT_CHARS: Final = 200_000
"""An inline subagent's system prompt, at most (characters)."""
MAX_TARGET_CHARS: Final = 1024


class SubagentIn(BaseModel):
    """``POST /v1/subagents``: exactly one of ``target`` and ``prompt``."""

    model_config = ConfigDict(extra="forbid")

    target: str | None = Field(default=None, min_length=1, max_length=MAX_TARGET_CHARS)
    inputs: dict[str, Any] = Field(default_factory=dict)
    prompt: str | None = Field(default=None, min_length=1)
    version: int | None = Field(default=None, ge=1)


def _invalid(message: str, pointer: str) -> ApiError:
    return ApiError(
        ErrorCode.INVALID_REQUEST, message, details=[{"pointer": pointer, "message": message}]
    )


def markdown_path(target: str, skill_name: str) -> str:
    """``references/foo.md`` of skill ``s`` → ``skills/s/references/foo.md``, bundle-relative;
    400 for a path that would leave the bundle."""
    if target.startswith("/") or "\\" in target or any(ord(c) < 32 for c in target):
        raise _invalid(
            f"target {target!r} must be a path relative to the skill's folder, with '/' between folders",
            "/target",
        )
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


async def _caller_skill(gw: Gateway, caller: JobCaller) -> Any:
    row = await catalog.skill_manifest(gw.db, caller.deployment_id, caller.skill_name)
    if row is None:
        raise ApiError(
            ErrorCode.CONFLICT,
            f"skill {caller.skill_name!r} of deployment {caller.deployment_id} is no longer in the catalogue",
        )
    return row


async def plan(
    gw: Gateway, caller: JobCaller, body: SubagentIn
) -> tuple[JobSpec, SubagentStartedPayload]:
    """What the child runs (without its ids), or a 4xx saying why it cannot."""
    if (body.target is None) == (body.prompt is None):
        raise _invalid(
            "pass exactly one of target (a skill or a markdown file) and prompt",
            "/target" if body.target is None else "/prompt",
        )
    if body.prompt is not None and len(body.prompt) > MAX_PROMPT_CHARS:
        raise _invalid(
            f"prompt has {len(body.prompt)} characters; the limit is {MAX_PROMPT_CHARS}", "/prompt"
        )
    markdown = body.target is not None and body.target.endswith(".md")
    if body.version is not None and (body.prompt is not None or markdown):
        raise _invalid(
            "version pins a declared skill; an inline prompt or a markdown file always runs on the caller's own deployment",
            "/version",
        )
    if body.target is not None and not markdown:
        return await _declared(gw, caller, body)
    skill = await _caller_skill(gw, caller)
    if markdown:
        assert body.target is not None
        sub = SubagentSpec(
            kind="markdown",
            path=markdown_path(body.target, caller.skill_name),
            model=skill["model"],
        )
        target, kind = body.target, "markdown"
    else:
        sub = SubagentSpec(kind="prompt", prompt=body.prompt, model=skill["model"])
        target, kind = "prompt", "prompt"
    spec = JobSpec(
        skill_name=caller.skill_name,
        skillpack_id=caller.skillpack_id,
        skillpack_slug=caller.skillpack_slug,
        owner_workspace_id=caller.owner_workspace_id,
        deployment_id=caller.deployment_id,
        version=caller.version,
        kind=JobKind.AGENT,
        entrypoint=skill["entrypoint"],
        timeout_seconds=submission.timeout_seconds(skill["timeout_seconds"]),
        subagent=sub,
        parent_job_id=caller.job_id,
        key_id=caller.key_id,
        inputs=body.inputs,
    )
    started = SubagentStartedPayload(
        child_job_id=caller.job_id,
        kind=kind,
        target=target,
        skill_name=caller.skill_name,
        skillpack=caller.skillpack_slug,
        version=caller.version,
    )
    return spec, started


async def _declared(
    gw: Gateway, caller: JobCaller, body: SubagentIn
) -> tuple[JobSpec, SubagentStartedPayload]:
    assert body.target is not None
    try:
        address = catalog.parse_address(body.target, skillpack=None)
    except ApiError as exc:
        raise _invalid(exc.message.replace("skill ", "target ", 1), "/target") from None
    if address.skillpack is None:
        # A bare name is a skill of the caller's own skillpack, wherever that lives.
        owner = await workspaces.slug_of(gw.db, caller.owner_workspace_id)
        address = catalog.Address(
            owner or str(caller.owner_workspace_id), caller.skillpack_slug, address.skill
        )
    skill = await submission.resolve(
        gw,
        caller_workspace_id=caller.workspace_id,
        address=address,
        default_skillpack=caller.skillpack_slug,
        version=body.version,
        prefer=caller.deployment_id,  # while its skillpack ramps, a tree stays on one version
    )
    await submission.check_inputs(skill, body.inputs)
    spec = submission.spec_for(
        skill, inputs=body.inputs, key_id=caller.key_id, parent_job_id=caller.job_id
    )
    started = SubagentStartedPayload(
        child_job_id=caller.job_id,
        kind="skill",
        target=body.target,
        skill_name=skill.name,
        skillpack=skill.skillpack_slug,
        version=skill.version,
    )
    return spec, started


async def submit(gw: Gateway, caller: JobCaller, body: SubagentIn) -> JobOut:
    """Queue the child; 4xx for a target that cannot run, or a tree past its bounds."""
    root, ancestors = await jobs.root_of(gw.db, caller.job_id)
    depth = ancestors + 1
    if depth > gw.settings.subagent_max_depth:
        raise _invalid(
            f"a subagent of job {caller.job_id} would be at depth {depth}; the limit is {gw.settings.subagent_max_depth} "
            "(PURAS_GATEWAY_SUBAGENT_MAX_DEPTH)",
            "/target",
        )
    spec, started = await plan(gw, caller, body)
    await fences.admit_subagent(gw, workspace_id=caller.workspace_id, key_id=caller.key_id)

    async def under_live_parent(uow: UnitOfWork, submitted: JobSubmitted) -> Sequence[Event]:
        # The parent's row, locked: a cancel or an end of the parent and this submit are serialised.
        status = await jobs.lock_status(uow.conn, caller.job_id)
        if status is None or status.terminal:
            raise ApiError(
                ErrorCode.CONFLICT, f"job {caller.job_id} has ended; it cannot start subagents"
            )
        children = await jobs.children_count(uow.conn, caller.job_id)
        if children >= gw.settings.subagent_max_children:
            raise _invalid(
                f"job {caller.job_id} has started {children} subagents; the limit is {gw.settings.subagent_max_children} "
                "(PURAS_GATEWAY_SUBAGENT_MAX_CHILDREN)",
                "/target",
            )
        limit = gw.settings.subagent_max_descendants
        if await jobs.count_descendant(uow.conn, root, limit=limit) is None:
            raise _invalid(
                f"the tree of job {root} has started {limit} subagents in all; the limit is {limit} "
                "(PURAS_GATEWAY_SUBAGENT_MAX_DESCENDANTS)",
                "/target",
            )
        notice = JobSubagentStarted.new(
            started.model_copy(update={"child_job_id": submitted.job_id}),
            producer="gateway",
            workspace_id=caller.workspace_id,
            job_id=caller.job_id,
            caused_by=submitted,
        )
        # The parent's notice first: it is on the stream before the child can run.
        return (notice,)

    return await submission.enqueue(
        gw,
        spec,
        workspace_id=caller.workspace_id,
        workspace_slug=await workspaces.slug_of(gw.db, caller.workspace_id) or "",
        in_transaction=under_live_parent,
    )
