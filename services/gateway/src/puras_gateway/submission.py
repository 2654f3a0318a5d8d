"""Submitting jobs: the one path by which a job enters the platform, whether an app submits it
(``POST /v1/jobs``) or a running job starts it as a subagent (``POST /v1/subagents``).

Both resolve a skill through the catalogue, check the inputs against its ``input_schema``,
clamp its timeout, move inputs too large for an event into the payload store, and write the
``job.submitted`` event and the job's read-model row in one transaction, so the row exists as
soon as the client holds the job's id. What differs is passed in: the fences each path admits
by, and what else must hold or be written in that transaction (an idempotency key; the parent's
state and its ``subagent`` notice).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final
from uuid import UUID

import orjson
from puras_common.api import ApiError, ErrorCode, JobOut, JobStatus
from puras_common.db import as_connection
from puras_common.envelope import Event
from puras_common.events import JobKind, JobSpec, JobSubmitted
from puras_common.events.jobs import RetryPolicy
from puras_common.ids import new_id
from puras_common.observability import job_span
from puras_common.outbox import UnitOfWork
from puras_common.payloads import payload_key
from puras_common.schemas import validate_off_loop

from puras_gateway import catalog, fences, idempotency, jobs, keys
from puras_gateway.catalog import Address, ResolvedSkill
from puras_gateway.context import Gateway
from puras_gateway.jobview import load_job
from puras_gateway.keys import Principal
from puras_gateway.requests import JobRequest

DEFAULT_TIMEOUT_SECONDS: Final = 900
"""A skill's timeout when its manifest names none."""
MAX_TIMEOUT_SECONDS: Final = 3600

InTransaction = Callable[[UnitOfWork, JobSubmitted], Awaitable[Sequence[Event]]]
"""Run inside the submit's transaction before ``job.submitted`` is written: checks that must
hold when it commits (raise to roll back), and the events to write ahead of it."""


async def resolve(
    gw: Gateway,
    *,
    caller_workspace_id: UUID,
    address: Address,
    default_skillpack: str,
    version: int | None,
    routing_key: str | None = None,
    prefer: UUID | None = None,
) -> ResolvedSkill:
    """The deployment and manifest a job for ``address`` runs (cached until the catalogue
    changes); 404 or 409 naming what is missing. While the skillpack ramps up a deployment, an
    unpinned job is routed by ``routing_key`` (else at random), or to ``prefer`` when that is
    one of the two."""
    async with gw.db.acquire() as conn:
        return await gw.skills.resolve(
            as_connection(conn),
            caller_workspace_id=caller_workspace_id,
            address=address,
            default_skillpack=default_skillpack,
            version=version,
            routing_key=routing_key,
            prefer=prefer,
        )


async def check_inputs(skill: ResolvedSkill, inputs: dict[str, Any]) -> None:
    """422 with JSON pointers when ``inputs`` do not match the skill's ``input_schema``
    (large inputs are checked in a worker thread, off the event loop)."""
    if skill.input_schema is None:
        return
    problems = await validate_off_loop(skill.input_schema, inputs, root=("inputs",))
    if problems:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            f"inputs do not match the input_schema of {skill.name!r}: {problems[0].message} at {problems[0].pointer}",
            details=problems,
        )


def timeout_seconds(declared: int | None) -> int:
    """The manifest's timeout, or the default, never above the platform's maximum."""
    return min(declared or DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS)


def spec_for(
    skill: ResolvedSkill,
    *,
    inputs: dict[str, Any],
    key_id: UUID | None,
    parent_job_id: UUID | None = None,
    daily_cap_micros: int | None = None,
) -> JobSpec:
    """What a job of ``skill`` runs."""
    return JobSpec(
        skill_name=skill.name,
        skillpack_id=skill.skillpack_id,
        skillpack_slug=skill.skillpack_slug,
        owner_workspace_id=skill.owner_workspace_id,
        deployment_id=skill.deployment_id,
        version=skill.version,
        kind=JobKind(skill.kind),
        entrypoint=skill.entrypoint,
        timeout_seconds=timeout_seconds(skill.timeout_seconds),
        retries=RetryPolicy.model_validate(skill.retries) if skill.retries else None,
        inputs=inputs,
        parent_job_id=parent_job_id,
        key_id=key_id,
        daily_cap_micros=daily_cap_micros,
    )


async def enqueue(
    gw: Gateway,
    spec: JobSpec,
    *,
    workspace_id: UUID,
    workspace_slug: str,
    in_transaction: InTransaction | None = None,
    cap_known: bool = False,
) -> JobOut:
    """Write ``job.submitted`` for ``spec`` and the job's row; the job as queued."""
    job_id = new_id()
    spec = await _offload_inputs(gw, spec, workspace_id=workspace_id, job_id=job_id)
    with job_span("gateway submit", job_id, attributes={"puras.skill": spec.skill_name}):
        async with gw.outbox.transaction() as uow:
            return await enqueue_in(
                uow,
                spec,
                job_id=job_id,
                workspace_id=workspace_id,
                workspace_slug=workspace_slug,
                in_transaction=in_transaction,
                cap_known=cap_known,
            )


async def _offload_inputs(
    gw: Gateway, spec: JobSpec, *, workspace_id: UUID, job_id: UUID
) -> JobSpec:
    """``spec`` with inputs too large for an event moved to the payload store."""
    if spec.inputs is None or len(orjson.dumps(spec.inputs)) <= gw.settings.inline_payload_bytes:
        return spec
    ref = await gw.payloads.put(payload_key(workspace_id, job_id, "inputs"), spec.inputs)
    return spec.model_copy(update={"inputs": None, "inputs_ref": ref})


async def enqueue_in(
    uow: UnitOfWork,
    spec: JobSpec,
    *,
    job_id: UUID,
    workspace_id: UUID,
    workspace_slug: str,
    in_transaction: InTransaction | None = None,
    cap_known: bool = False,
) -> JobOut:
    """Write ``job.submitted`` and the job's row in ``uow``'s transaction (inputs already
    inline-sized); the job as queued. ``cap_known``: ``spec`` already holds its key's daily cap
    (None: the key has none), read with the key for this request, so it is not read again."""
    if spec.key_id is not None and spec.daily_cap_micros is None and not cap_known:
        # Every paid call of the job (and of its subagents) is held against this cap.
        cap = await keys.daily_cap(uow.conn, spec.key_id)
        if cap is not None:
            spec = spec.model_copy(update={"daily_cap_micros": cap})
    submitted = JobSubmitted.new(spec, producer="gateway", workspace_id=workspace_id, job_id=job_id)
    ahead = await in_transaction(uow, submitted) if in_transaction is not None else ()
    uow.emit(*ahead, submitted)
    # The row exists as soon as the client holds its id; the projection fills the rest.
    await jobs.fold(uow.conn, [(submitted, None)])
    return JobOut(
        id=job_id,
        status=JobStatus.QUEUED,
        skill_name=spec.skill_name,
        skillpack=spec.skillpack_slug,
        workspace=workspace_slug,
        deployment_id=spec.deployment_id,
        version=spec.version,
        attempt=0,
        parent_job_id=spec.parent_job_id,
        schedule_id=spec.schedule_id,
        scheduled_for=spec.scheduled_for,
        key_id=spec.key_id,
        created_at=submitted.occurred_at,
    )


async def submit(
    gw: Gateway, who: Principal, body: JobRequest, *, in_transaction: InTransaction | None = None
) -> JobOut:
    """An app's job: resolve, admit by the key's fences, validate and queue it."""
    address = catalog.parse_address(body.skill, skillpack=body.skillpack)
    skill = await resolve(
        gw,
        caller_workspace_id=who.workspace_id,
        address=address,
        default_skillpack=who.skillpack,
        version=body.version,
        routing_key=body.routing_key,
    )
    await fences.admit(gw, who, skill)
    await check_inputs(skill, body.inputs)
    spec = spec_for(
        skill, inputs=body.inputs, key_id=who.key_id, daily_cap_micros=who.daily_cap_micros
    )
    if body.priority:
        spec = spec.model_copy(update={"priority": body.priority})
    if body.webhook_url is not None:
        if who.kind == "publishable":
            raise ApiError(
                ErrorCode.FORBIDDEN,
                "a publishable key cannot name a webhook_url: it ships inside apps, and would "
                "let anyone aim the platform's requests; submit with a secret key, or register "
                "a webhook (POST /v1/webhooks)",
                details=[{"pointer": "/webhook_url", "message": "not with a publishable key"}],
            )
        spec = spec.model_copy(update={"webhook_url": body.webhook_url})
    return await enqueue(
        gw,
        spec,
        workspace_id=who.workspace_id,
        workspace_slug=who.workspace_slug,
        in_transaction=in_transaction,
        cap_known=who.key_id is not None,
    )


async def submit_idempotent(
    gw: Gateway, who: Principal, body: JobRequest, *, key: str, body_sha256: bytes
) -> tuple[JobOut, bool]:
    """The job an earlier request with this key and body created (within 24 h), or a new one;
    True when it is the earlier one.

    A concurrent request with the same key waits on the key's row until the first commits, then
    answers with the first one's job.
    """

    async def claim(uow: UnitOfWork, submitted: JobSubmitted) -> Sequence[Event]:
        if not await idempotency.claim(
            uow.conn,
            workspace_id=who.workspace_id,
            key=key,
            body_sha256=body_sha256,
            job_id=submitted.job_id,
        ):
            raise _KeyTaken  # another request holds the key: roll back, answer with its job
        return ()

    for _ in range(2):
        row = await idempotency.find(gw.db, workspace_id=who.workspace_id, key=key)
        if row is not None:
            if row["body_sha256"] != body_sha256:
                raise ApiError(
                    ErrorCode.CONFLICT,
                    f"Idempotency-Key {key!r} was used within 24 h for a different request body",
                )
            job = await load_job(gw, row["job_id"], who.workspace_id)
            if job is not None:
                return job, True
        try:
            return await submit(gw, who, body, in_transaction=claim), False
        except _KeyTaken:
            continue  # a concurrent request with the same key won; read its job
    raise ApiError(
        ErrorCode.CONFLICT, f"Idempotency-Key {key!r} is in use by a request still being processed"
    )


class _KeyTaken(Exception):
    """The idempotency key was claimed by a concurrent request."""
