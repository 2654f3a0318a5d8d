"""Events of the JOBS stream: ``job.<job_id>.<type>``, one job's history in order."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Final, Literal
from uuid import UUID

from pydantic import Field

from puras_common import streams
from puras_common.api import TERMINAL_STATUSES
from puras_common.envelope import Event, Payload


class JobKind(StrEnum):
    """Which runner takes the job: decided by the skill's entrypoint, never by the caller."""

    FUNCTION = "function"
    AGENT = "agent"


class SubagentSpec(Payload):
    """A subagent that is not a declared skill: a markdown file of the caller's bundle, or an
    inline prompt, run as an agent in the caller's deployment with the built-in tools and a
    free-form ``set_output``."""

    kind: Literal["markdown", "prompt"]
    path: str | None = None
    """For ``markdown``: the file, relative to the bundle's root (checked to stay inside it)."""
    prompt: str | None = None
    """For ``prompt``: the system prompt itself."""
    model: str | None = None
    """The caller skill's model; None for the platform default."""


MAX_RETRY_ATTEMPTS: Final = 10
MAX_RETRY_BACKOFF_SECONDS: Final = 600


class RetryPolicy(Payload):
    """``retries:`` of a deterministic skill: how often a failed job runs again, and the first
    pause (doubled for each further attempt, with jitter)."""

    max_attempts: int = Field(ge=1, le=MAX_RETRY_ATTEMPTS)
    """Runs in all, the first included."""
    backoff_seconds: float = Field(default=1.0, ge=0, le=MAX_RETRY_BACKOFF_SECONDS)


class JobSpec(Payload):
    """What a job runs, fixed when it is submitted."""

    skill_name: str
    skillpack_id: UUID
    skillpack_slug: str
    owner_workspace_id: UUID
    """The skillpack's workspace: its secrets are the ones the job sees."""
    deployment_id: UUID
    version: int
    kind: JobKind
    entrypoint: str
    timeout_seconds: int
    inputs: dict[str, Any] | None = None
    inputs_ref: str | None = None
    """Set instead of ``inputs`` when they exceed the inline limit: a payload object key."""
    parent_job_id: UUID | None = None
    key_id: UUID | None = None
    subagent: SubagentSpec | None = None
    """Set for a subagent that is a markdown file or an inline prompt (not a declared skill)."""
    schedule_id: UUID | None = None
    """Set for a job a schedule started."""
    scheduled_for: datetime | None = None
    """The schedule's fire time this job is for."""
    webhook_url: str | None = None
    """Where this job's end (and its requests for input) are also sent, signed."""
    daily_cap_micros: int | None = None
    """The cap of ``key_id`` when the job was submitted: each paid call's hold is checked
    against it (None: no cap)."""
    retries: RetryPolicy | None = None
    """The skill's retry policy (deterministic skills only), fixed at submit."""
    priority: int = 0
    """Its place in its workspace's own queue (-10..10, higher first); never ahead of another
    workspace's jobs, which are served in turns."""


class _JobEvent(Event):
    stream: ClassVar = streams.JOBS

    job_id: UUID
    """Every job event names its job: the id is in its subject, ``job.<job_id>.…``."""


class JobSubmitted(_JobEvent):
    """A job was accepted by the gateway and is queued."""

    subject_pattern: ClassVar = "job.{job_id}.submitted"
    type: Literal["job.submitted"] = "job.submitted"
    payload: JobSpec


class DispatchedPayload(Payload):
    attempt: int
    kind: JobKind


class JobDispatched(_JobEvent):
    """The scheduler handed attempt ``attempt`` of the job to the runners' work queue.

    No longer emitted: the work command itself is the dispatch, and ``job.started`` names the
    attempt to readers. Kept so that streams written before still decode and replay."""

    subject_pattern: ClassVar = "job.{job_id}.dispatched"
    type: Literal["job.dispatched"] = "job.dispatched"
    payload: DispatchedPayload


class StartedPayload(Payload):
    attempt: int
    runner: str


class JobStarted(_JobEvent):
    """A runner began executing an attempt."""

    subject_pattern: ClassVar = "job.{job_id}.started"
    type: Literal["job.started"] = "job.started"
    payload: StartedPayload


class LoggedPayload(Payload):
    attempt: int
    stream: Literal["stdout", "stderr"]
    text: str
    """One or more complete lines, without the final newline."""
    truncated: bool = False
    """The marker that the job's log reached its limit: what it printed after is dropped."""


class JobLogged(_JobEvent):
    """The job printed something."""

    subject_pattern: ClassVar = "job.{job_id}.log"
    type: Literal["log"] = "log"
    payload: LoggedPayload


class JobUsagePayload(Payload):
    """What one upstream call of the job consumed and cost, as the job's history shows it."""

    usage_id: UUID
    """The usage's id: that of the ``usage.recorded`` event billing charges (one ledger entry
    per usage id), or with ``ledger`` false the row's own."""
    ledger: bool = True
    """Whether billing charges it: its ``usage.recorded`` went to billing, whose ledger entry
    brings the usage row to the read models. False for compute that costs nothing at the
    operator's rates: no ``usage.recorded`` is sent, no entry is made, and this payload is the
    row's only source (on a ``job.usage``, or as the ``compute`` of the event that ended the
    attempt)."""
    key_id: UUID | None = None
    """The API key the job was submitted with, for the row of a usage the ledger does not bring;
    not shown to clients."""
    attempt: int | None = None
    kind: Literal["llm", "media", "tool", "compute"]
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    units: str = "0"
    unit: str = "token"
    billed_micros: int
    """Priced by the producer with :mod:`puras_pricing`, as billing prices it."""
    cpu_ms: int | None = None
    """For ``compute``: the CPU time the attempt's processes used, in milliseconds."""
    wall_ms: int | None = None
    """For ``compute``: the attempt's wall time, in milliseconds."""


class SucceededPayload(Payload):
    attempt: int
    result: Any = None
    result_ref: str | None = None
    """Set instead of ``result`` when it exceeds the inline limit: a payload object key."""
    duration_ms: int
    compute: JobUsagePayload | None = None
    """The attempt's own compute when it went to no ledger (``ledger`` false): its usage row,
    carried by the event that ended the attempt instead of a ``job.usage`` of its own."""


class JobSucceeded(_JobEvent):
    """The job finished and returned a result."""

    subject_pattern: ClassVar = "job.{job_id}.succeeded"
    type: Literal["job.succeeded"] = "job.succeeded"
    payload: SucceededPayload


class FailedPayload(Payload):
    attempt: int | None
    error: str
    """One line a person can act on."""
    error_detail: dict[str, Any] | None = None
    """Structured detail: ``{type, message, traceback}`` for exceptions, limits for timeouts."""
    reason: Literal[
        "exception",
        "timeout",
        "invalid_result",
        "output_schema",
        "worker_lost",
        "runtime",
        "invalid_inputs",
        "insufficient_credits",
        "spend_cap_reached",
    ] = "exception"
    duration_ms: int | None = None
    compute: JobUsagePayload | None = None
    """The attempt's own compute when it went to no ledger (``ledger`` false): its usage row,
    carried by the event that ended the attempt instead of a ``job.usage`` of its own."""


class JobFailed(_JobEvent):
    """The job ended in failure."""

    subject_pattern: ClassVar = "job.{job_id}.failed"
    type: Literal["job.failed"] = "job.failed"
    payload: FailedPayload


class CancelledPayload(Payload):
    attempt: int | None = None
    reason: str = "cancelled by request"
    compute: JobUsagePayload | None = None
    """The attempt's own compute when it went to no ledger (``ledger`` false): its usage row,
    carried by the event that ended the attempt instead of a ``job.usage`` of its own."""


class JobCancelled(_JobEvent):
    """The job was cancelled (while queued by the scheduler, while running by its runner)."""

    subject_pattern: ClassVar = "job.{job_id}.cancelled"
    type: Literal["job.cancelled"] = "job.cancelled"
    payload: CancelledPayload


class CancelRequestedPayload(Payload):
    key_id: UUID | None = None


class JobCancelRequested(_JobEvent):
    """Someone asked to cancel the job; the scheduler or the runner acts on it."""

    subject_pattern: ClassVar = "job.{job_id}.cancel_requested"
    type: Literal["job.cancel_requested"] = "job.cancel_requested"
    payload: CancelRequestedPayload


class RetryingPayload(Payload):
    attempt: int
    """The new attempt."""
    reason: str
    retry_in_seconds: float | None = None
    """Set when a failed attempt is retried under the skill's policy: the pause before the new
    attempt is dispatched (None: a lost worker's job runs again at once)."""
    compute: JobUsagePayload | None = None
    """The failed attempt's own compute when it went to no ledger, as on ``job.failed``."""


class JobRetrying(_JobEvent):
    """A deterministic job runs again as a new attempt: its worker was lost, or the attempt
    failed and the skill's ``retries:`` policy allows another."""

    subject_pattern: ClassVar = "job.{job_id}.retrying"
    type: Literal["job.retrying"] = "job.retrying"
    payload: RetryingPayload


WaitingReason = Literal["queue", "concurrency_limit", "no_runner", "no_credit", "spend_cap"]
"""Why a queued job has not started: behind other jobs of its workspace (``queue``), at the
workspace's limit of jobs at once, handed to the runners but not taken by one, the workspace's
balance at zero, or the submitting key's daily cap spent."""


class WaitChangedPayload(Payload):
    reason: WaitingReason
    queue_position: int | None = None
    """1 for the next of its workspace's queue; None once handed to the runners."""


class JobWaitChanged(_JobEvent):
    """The reason a queued job waits changed (published as the scheduler notices it)."""

    subject_pattern: ClassVar = "job.{job_id}.wait_changed"
    type: Literal["job.wait_changed"] = "job.wait_changed"
    payload: WaitChangedPayload


class InputRequestedPayload(Payload):
    """A question the job asks; it waits, holding no runner slot, until it is answered."""

    attempt: int
    request_id: UUID
    """Names this question: an answer may name it, so it cannot answer a later one."""
    number: int
    """1 for the job's first question, 2 for its second …"""
    prompt: str
    answer_schema: dict[str, Any]
    """The JSON Schema the answer must match."""
    timeout_seconds: int
    expires_at: datetime | None = None
    """When the job fails unanswered (set by the scheduler as the job starts waiting)."""


class JobInputRequested(_JobEvent):
    """The job asked for input and is waiting for it (status ``waiting``)."""

    subject_pattern: ClassVar = "job.{job_id}.input_requested"
    type: Literal["job.input_requested"] = "job.input_requested"
    payload: InputRequestedPayload


class InputProvidedPayload(Payload):
    request_id: UUID
    answer: Any
    """Valid against the question's ``answer_schema``, checked by the gateway."""
    key_id: UUID | None = None
    """The API key that answered (None: a person signed in)."""


class JobInputProvided(_JobEvent):
    """Someone answered the job's question; the scheduler queues the job to run on."""

    subject_pattern: ClassVar = "job.{job_id}.input_provided"
    type: Literal["job.input_provided"] = "job.input_provided"
    payload: InputProvidedPayload


class ResumeState(Payload):
    """What a job that waited for input runs on from: every answer it got, in order. (An agent
    also reloads the conversation it saved as it asked, a payload object of its own.)"""

    answers: list[Any] = Field(default_factory=list)


class JobUsageRecorded(_JobEvent):
    """A job made a billable call; a copy of its ``usage.recorded`` for the job's history."""

    subject_pattern: ClassVar = "job.{job_id}.usage"
    type: Literal["job.usage"] = "job.usage"
    payload: JobUsagePayload


class SubagentStartedPayload(Payload):
    """A job started a subagent: the child job, and what it runs."""

    child_job_id: UUID
    kind: Literal["skill", "markdown", "prompt"]
    target: str
    """The skill address or the markdown path as the caller gave it; ``prompt`` for an inline prompt."""
    skill_name: str
    skillpack: str
    version: int


class JobSubagentStarted(_JobEvent):
    """On the parent's history: a subagent was submitted as its child (the child's own events
    are on ``job.<child_job_id>.>``)."""

    subject_pattern: ClassVar = "job.{job_id}.subagent"
    type: Literal["job.subagent"] = "job.subagent"
    payload: SubagentStartedPayload


TERMINAL_TYPES: Final = frozenset(f"job.{status.value}" for status in TERMINAL_STATUSES)
"""The events that end a job: ``job.succeeded``, ``job.failed``, ``job.cancelled``."""
