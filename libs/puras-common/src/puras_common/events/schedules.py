"""Events of schedules, on the PLATFORM stream: ``schedule.<workspace_id>.<verb>``.

The gateway owns a schedule's definition (what it runs, with which inputs, under which key) and
tells the scheduler only its timing (``schedule.set``, ``schedule.deleted``). The scheduler
decides each fire time exactly once, under a unique (schedule, fire time) key, and says so
(``schedule.fired``, naming the job id to use); the gateway then submits that job.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from puras_common import streams
from puras_common.envelope import Event, Payload


class _ScheduleEvent(Event):
    stream: ClassVar = streams.PLATFORM


class ScheduleSetPayload(Payload):
    """A schedule's timing, as the scheduler needs it."""

    schedule_id: UUID
    cron: str
    timezone: str
    missed: Literal["skip", "catch_up"] = "skip"
    catch_up_limit: int = Field(default=0, ge=0)
    paused: bool = False
    revision: int
    """Counts the schedule's changes: only a newer revision is applied."""


class ScheduleSet(_ScheduleEvent):
    """A schedule was created or changed (its timing, or paused / resumed). Fire times count
    from the moment of a change of timing or of a resume, never from before it."""

    subject_pattern: ClassVar = "schedule.{workspace_id}.set"
    type: Literal["schedule.set"] = "schedule.set"
    payload: ScheduleSetPayload


class ScheduleDeletedPayload(Payload):
    schedule_id: UUID
    revision: int


class ScheduleDeleted(_ScheduleEvent):
    """A schedule was deleted; it fires no more."""

    subject_pattern: ClassVar = "schedule.{workspace_id}.deleted"
    type: Literal["schedule.deleted"] = "schedule.deleted"
    payload: ScheduleDeletedPayload


class ScheduleFiredPayload(Payload):
    schedule_id: UUID
    fire_at: datetime
    """The fire time (UTC) this job is for; unique per schedule."""
    job_id: UUID
    """The id the job gets: the gateway submits it under this id, once."""


class ScheduleFired(_ScheduleEvent):
    """A fire time of a schedule came: exactly one job is to start for it."""

    subject_pattern: ClassVar = "schedule.{workspace_id}.fired"
    type: Literal["schedule.fired"] = "schedule.fired"
    payload: ScheduleFiredPayload
