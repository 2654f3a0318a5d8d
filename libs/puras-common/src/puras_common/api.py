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
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: Final = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class OutputFile(BaseModel):
    drive_path: str
    signed_url: str | None = None


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
    result: Any = None
    error: str | None = None
    error_detail: dict[str, Any] | None = None
    cost_micros: Micros = 0
    total_cost_micros: Micros = 0
    outputs: list[OutputFile] = Field(default_factory=list)
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
    "job.subagent": "subagent",
    "job.succeeded": "succeeded",
    "job.failed": "failed",
    "job.cancelled": "cancelled",
}
"""Internal catalogue type -> public event type. Types not listed here stay internal."""

PUBLIC_TERMINAL_TYPES: Final = frozenset({"succeeded", "failed", "cancelled"})


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
