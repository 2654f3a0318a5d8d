"""The public API's conventions (ARCHITECTURE §7), shared by every endpoint and client.

One error body everywhere: ``{"error": {"code", "message", "details"}}``, with the HTTP status
fixed by the code. The job object, the public event types and their mapping from the internal
catalogue, and list pages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from puras_common.money import Micros


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    INVALID_BUNDLE = "invalid_bundle"
    MISSING_KEY = "missing_key"
    MALFORMED_KEY = "malformed_key"
    INVALID_KEY = "invalid_key"
    REVOKED_KEY = "revoked_key"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    SKILL_NOT_ALLOWED = "skill_not_allowed"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_ERROR = "validation_error"
    SPEND_CAP_REACHED = "spend_cap_reached"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    INTERNAL_ERROR = "internal_error"
    UNAVAILABLE = "unavailable"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"


STATUS: Final[Mapping[ErrorCode, int]] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.INVALID_BUNDLE: 400,
    ErrorCode.MISSING_KEY: 401,
    ErrorCode.MALFORMED_KEY: 401,
    ErrorCode.INVALID_KEY: 401,
    ErrorCode.REVOKED_KEY: 401,
    ErrorCode.INSUFFICIENT_CREDITS: 402,
    ErrorCode.SKILL_NOT_ALLOWED: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.SPEND_CAP_REACHED: 429,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.QUOTA_EXCEEDED: 507,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UPSTREAM_ERROR: 502,
    ErrorCode.UPSTREAM_TIMEOUT: 504,
}


class ErrorDetail(BaseModel):
    """One problem, located by a JSON pointer into the request (``/inputs/text``)."""

    pointer: str
    message: str


class ErrorInfo(BaseModel):
    code: ErrorCode
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorInfo


class ApiError(Exception):
    """An error with its public code, a message saying what and where, and optional details."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def body(self) -> dict[str, Any]:
        details = self.details
        if isinstance(details, list):
            details = [d.model_dump() if isinstance(d, BaseModel) else d for d in details]
        return {"error": {"code": self.code.value, "message": self.message, "details": details}}


def json_pointer(path: Iterable[str | int]) -> str:
    """RFC 6901 pointer for a path (``["inputs", "a/b", 0]`` -> ``/inputs/a~1b/0``)."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "".join("/" + p for p in parts)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    """The job asked for input (``input_request``) and holds no runner slot until answered."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: Final = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
"""The one definition of a job's end; the event types, public event types and SQL below are
derived from it."""

TERMINAL_SQL: Final = "(" + ", ".join(f"'{s.value}'" for s in sorted(TERMINAL_STATUSES)) + ")"
"""The terminal statuses as a SQL list, for statements that must never move an ended job:
``WHERE status NOT IN {TERMINAL_SQL}``."""


class OutputFile(BaseModel):
    drive_path: str
    signed_url: str | None = None


class InputRequestOut(BaseModel):
    """The question a waiting job asked: answer it with ``POST /v1/jobs/{id}/input``."""

    request_id: UUID
    number: int
    """1 for the job's first question, 2 for its second …"""
    prompt: str
    answer_schema: dict[str, Any]
    """The JSON Schema the answer must match."""
    timeout_seconds: int
    expires_at: datetime | None = None
    """When the job fails if no answer has come."""


class JobOut(BaseModel):
    """The job object, as every endpoint and client shows it."""

    id: UUID
    status: JobStatus
    skill_name: str
    skillpack: str
    workspace: str
    deployment_id: UUID
    version: int
    attempt: int
    parent_job_id: UUID | None = None
    schedule_id: UUID | None = None
    """The schedule that started the job, if one did."""
    scheduled_for: datetime | None = None
    """The schedule's fire time the job is for."""
    key_id: UUID | None = None
    """The API key that submitted it (None: a person signed in, or a parent job's tree)."""
    result: Any = None
    error: str | None = None
    error_detail: dict[str, Any] | None = None
    waiting_reason: str | None = None
    """While queued: ``queue``, ``concurrency_limit``, ``no_runner``, ``no_credit`` or
    ``spend_cap`` (see docs/queue.md); None otherwise, or when the scheduler did not answer."""
    queue_position: int | None = None
    """While queued: 1 for the next of its workspace's queue."""
    cost_micros: Micros = 0
    total_cost_micros: Micros = 0
    outputs: list[OutputFile] = Field(default_factory=list)
    input_request: InputRequestOut | None = None
    """While the job is ``waiting``: the question it asked."""
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


PUBLIC_EVENT_TYPES: Final[Mapping[str, str]] = {
    "job.submitted": "queued",
    "job.started": "started",
    "agent.started": "agent_start",
    "step.completed": "step",
    "tool.called": "tool_call",
    "tool.completed": "tool_result",
    "log": "log",
    "usage.recorded": "usage",
    "job.usage": "usage",
    "job.output": "output",
    "job.retrying": "retrying",
    "job.wait_changed": "waiting_reason",
    "job.subagent": "subagent",
    "job.input_requested": "input_requested",
    "job.input_provided": "input_provided",
    "job.succeeded": "succeeded",
    "job.failed": "failed",
    "job.cancelled": "cancelled",
}
"""Internal catalogue type -> public event type. Types not listed here stay internal."""

PUBLIC_TERMINAL_TYPES: Final = frozenset(status.value for status in TERMINAL_STATUSES)
"""A job's last public event is named after the status it ended in."""


class PublicEvent(BaseModel):
    """A job event as clients see it; ``id`` is the JOBS stream sequence number."""

    model_config = ConfigDict(frozen=True)

    id: int
    type: str
    payload: dict[str, Any]
    created_at: datetime


class EventsPage(BaseModel):
    events: list[PublicEvent]
    next_after_id: int
    terminal: bool


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A list, newest first; pass ``next_cursor`` back as ``?cursor=`` for the next page."""

    data: list[T]
    next_cursor: str | None = None


DEFAULT_PAGE_LIMIT: Final = 25
MAX_PAGE_LIMIT: Final = 200

MAX_EVENT_ID: Final = 2**63 - 1
"""The largest event id a client may name (a JetStream sequence; PostgreSQL keeps it as a
``bigint``): a resume point past it is refused rather than handed to either."""
