"""Answering a waiting job's question: ``POST /v1/jobs/{id}/input``.

The answer is checked against the question's schema (400 naming each problem by its JSON
pointer under ``/answer``); the read model's row moves from ``waiting`` to ``queued`` in the
transaction that emits ``job.input_provided``, so a question takes exactly one answer (a second
one, or one for a job that is not waiting, is 409). The scheduler then queues the job to run on.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from puras_common.api import ApiError, ErrorCode, JobOut, JobStatus
from puras_common.events import JobInputProvided
from puras_common.events.jobs import InputProvidedPayload
from puras_common.input_requests import MAX_ANSWER_BYTES
from puras_common.schemas import validate_off_loop
from pydantic import BaseModel, Field

from puras_gateway import jobs
from puras_gateway.context import Gateway
from puras_gateway.keys import Principal

MAX_BODY_BYTES = MAX_ANSWER_BYTES + 1024
"""The request body: the answer and the request id around it."""


class InputAnswer(BaseModel):
    """The answer to a waiting job's question."""

    answer: Any = Field(description="JSON matching the question's answer_schema")
    request_id: UUID | None = Field(
        default=None,
        description="The question answered (input_request.request_id); when given, an answer "
        "meant for an earlier or later question is refused with 409",
    )


async def provide(gw: Gateway, who: Principal, job: JobOut, body: InputAnswer) -> JobOut:
    """Answer ``job``'s question; the job as it stands after (queued to run on)."""
    question = job.input_request
    if job.status is not JobStatus.WAITING or question is None:
        raise ApiError(
            ErrorCode.CONFLICT,
            f"job {job.id} is {job.status.value}, not waiting for input: there is nothing to answer",
        )
    if body.request_id is not None and body.request_id != question.request_id:
        raise ApiError(
            ErrorCode.CONFLICT,
            f"job {job.id} waits on question {question.request_id}, not {body.request_id}",
            details=[{"pointer": "/request_id", "message": "not the question the job waits on"}],
        )
    size = len(orjson.dumps(body.answer))
    if size > MAX_ANSWER_BYTES:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"the answer is {size} bytes as JSON; the limit is {MAX_ANSWER_BYTES} bytes: "
            "put large content in the drive and answer with its path",
        )
    if problems := await validate_off_loop(question.answer_schema, body.answer, root=("answer",)):
        first = problems[0]
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"the answer does not match the question's answer_schema: {first.message} at {first.pointer}",
            details=problems,
        )
    event = JobInputProvided.new(
        InputProvidedPayload(request_id=question.request_id, answer=body.answer, key_id=who.key_id),
        producer="gateway",
        workspace_id=who.workspace_id,
        job_id=job.id,
    )
    async with gw.outbox.transaction() as uow:
        if await uow.conn.fetchval(jobs.ANSWERED, job.id, str(question.request_id)) is None:
            raise ApiError(
                ErrorCode.CONFLICT,
                f"job {job.id} is no longer waiting on question {question.request_id}: "
                "it was answered, cancelled or timed out meanwhile",
            )
        uow.emit(event)
    return job.model_copy(update={"status": JobStatus.QUEUED, "input_request": None})
