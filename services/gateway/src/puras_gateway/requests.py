"""Request bodies of the public API."""

from __future__ import annotations

from typing import Any, Literal

from puras_common.webhooks import TargetError, check_target
from pydantic import BaseModel, ConfigDict, Field, field_validator


class JobRequest(BaseModel):
    """``POST /v1/jobs`` body."""

    model_config = ConfigDict(extra="forbid")

    skill: str = Field(
        min_length=1,
        max_length=300,
        description="'skill', 'skillpack/skill' or 'workspace/skillpack/skill'",
    )
    inputs: dict[str, Any] = Field(default_factory=dict)
    skillpack: str | None = Field(
        default=None, min_length=1, max_length=200, description="Slug, UUID or workspace/skillpack"
    )
    version: int | None = Field(
        default=None, ge=1, description="Pin a deployment version of the skillpack"
    )
    routing_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="While a deployment ramps up, jobs with the same routing key (a user id, "
        "say) run the same version; without one, unpinned jobs are split at random",
    )
    priority: int = Field(
        default=0,
        ge=-10,
        le=10,
        description="Its place in this workspace's own queue, -10 to 10 (higher first; default "
        "0); other workspaces' jobs are served in turns whatever the priority",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Also send this job's end (and its requests for input) here, signed with "
        "the workspace's job_url webhook secret",
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_target(value)
            except TargetError as exc:
                raise ValueError(str(exc)) from None
        return value


class ScheduleIn(BaseModel):
    """``POST /v1/schedules`` body: run ``skill`` with ``inputs`` at every fire time of ``cron``."""

    model_config = ConfigDict(extra="forbid")

    skill: str = Field(
        min_length=1,
        max_length=300,
        description="'skill', 'skillpack/skill' or 'workspace/skillpack/skill'",
    )
    inputs: dict[str, Any] = Field(default_factory=dict)
    skillpack: str | None = Field(default=None, min_length=1, max_length=200)
    cron: str = Field(
        min_length=1,
        max_length=120,
        description="Five fields (minute hour day month weekday), a sixth for seconds, or an "
        "alias such as @hourly",
    )
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description="IANA name")
    name: str = Field(default="", max_length=100)
    missed: Literal["skip", "catch_up"] = Field(
        default="skip",
        description="Fire times missed while no scheduler ran: skip them, or catch up the "
        "newest catch_up_limit of them",
    )
    catch_up_limit: int | None = Field(default=None, ge=0, le=100)
    paused: bool = False


class ScheduleUpdate(BaseModel):
    """``PATCH /v1/schedules/{id}`` body: the fields to change."""

    model_config = ConfigDict(extra="forbid")

    skill: str | None = Field(default=None, min_length=1, max_length=300)
    inputs: dict[str, Any] | None = None
    skillpack: str | None = Field(default=None, min_length=1, max_length=200)
    cron: str | None = Field(default=None, min_length=1, max_length=120)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=100)
    missed: Literal["skip", "catch_up"] | None = None
    catch_up_limit: int | None = Field(default=None, ge=0, le=100)
    paused: bool | None = None
