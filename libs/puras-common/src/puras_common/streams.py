"""JetStream stream definitions, created or brought up to date idempotently at start."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from puras_common import subjects

DAY: Final = 24 * 3600.0


@dataclass(frozen=True)
class StreamSpec:
    """One stream: its name, subjects and retention."""

    name: str
    subjects: tuple[str, ...]
    retention: RetentionPolicy = RetentionPolicy.LIMITS
    max_age_seconds: float = 0.0
    """0 keeps messages until ``max_bytes`` (if any) pushes the oldest out."""
    max_bytes: int = -1
    duplicate_window_seconds: float = 600.0
    """Re-publishes of the same ``Nats-Msg-Id`` within this window are dropped by the server."""
    max_msg_size: int = 1024 * 1024
    max_msgs: int = -1
    discard: DiscardPolicy = DiscardPolicy.OLD
    """At a limit, the oldest messages go (never a refused publish, which would stall jobs)."""
    description: str = ""

    def config(self, replicas: int) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description=self.description,
            subjects=list(self.subjects),
            retention=self.retention,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=self.max_age_seconds,
            max_bytes=self.max_bytes,
            max_msgs=self.max_msgs,
            max_msg_size=self.max_msg_size,
            duplicate_window=self.duplicate_window_seconds,
            discard=self.discard,
            allow_direct=True,
        )


@dataclass(frozen=True)
class JobsLimits:
    """How much of the job event history the JOBS stream keeps (``PURAS_JOBS_STREAM_*``). The
    gateway's read model holds every job's events for the API; the stream is what consumers
    and a projection rebuild replay, and past these limits its oldest messages are discarded."""

    max_age_seconds: float = 30 * DAY
    max_bytes: int = 8 * 1024**3
    max_msgs: int = -1

    def spec(self) -> StreamSpec:
        return StreamSpec(
            "JOBS",
            (subjects.JOBS_ALL,),
            max_age_seconds=self.max_age_seconds,
            max_bytes=self.max_bytes,
            max_msgs=self.max_msgs,
            description="Every job's event history; its sequence numbers are the public event ids.",
        )


JOBS: Final = JobsLimits().spec()
WORK: Final = StreamSpec(
    "WORK",
    (
        subjects.RUN_FUNCTION,
        subjects.RUN_AGENT,
        subjects.RUN_FUNCTION_CHILD,
        subjects.RUN_AGENT_CHILD,
    ),
    retention=RetentionPolicy.WORK_QUEUE,
    description="Dispatched jobs; each message is taken by exactly one runner.",
)
USAGE: Final = StreamSpec(
    "USAGE", (subjects.USAGE_ALL,), description="Metered usage; billing's input."
)
LEDGER: Final = StreamSpec(
    "LEDGER",
    (subjects.LEDGER_POSTED_ALL, subjects.BALANCE_CHANGED_ALL),
    description="Posted ledger entries and balance changes.",
)
PLATFORM: Final = StreamSpec(
    "PLATFORM",
    tuple(f"{family}.>" for family in subjects.PLATFORM_FAMILIES),
    description="Deployments, secrets (names only), keys, workspaces, drive, feedback, schedules, webhooks.",
)
DLQ: Final = StreamSpec(
    "DLQ",
    (subjects.DLQ_ALL,),
    max_age_seconds=30 * DAY,
    description="Messages consumers gave up on, with the reason in headers; counted, never dropped silently.",
)

ALL: Final = (JOBS, WORK, USAGE, LEDGER, PLATFORM, DLQ)


async def ensure_streams(
    js: JetStreamContext,
    *,
    replicas: int = 1,
    specs: Iterable[StreamSpec] = ALL,
    jobs: JobsLimits | None = None,
) -> None:
    """Create every stream, or update it to the definition here; safe to run from every replica.
    ``jobs`` replaces the JOBS stream's default limits."""
    for spec in specs:
        if jobs is not None and spec.name == JOBS.name:
            spec = jobs.spec()
        config = spec.config(replicas)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                continue
            except Exception:
                # Another replica created it between our look and our create.
                await js.stream_info(spec.name)
        await js.update_stream(config)
