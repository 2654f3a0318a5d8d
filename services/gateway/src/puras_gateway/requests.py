"""Request bodies of the public API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobRequest(BaseModel):
    """``POST /v1/jobs`` body."""

    model_config = ConfigDict(extra="forbid")

    skill: str = Field(min_length=1, max_length=300, description="'skill', 'skillpack/skill' or 'workspace/skillpack/skill'")
    inputs: dict[str, Any] = Field(default_factory=dict)
    skillpack: str | None = Field(default=None, min_length=1, max_length=200, description="Slug, UUID or workspace/skillpack")
    version: int | None = Field(default=None, ge=1, description="Pin a deployment version of the skillpack")
