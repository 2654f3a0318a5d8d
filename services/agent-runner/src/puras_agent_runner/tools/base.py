"""What a tool is to the loop: a spec the model sees and a coroutine that runs a call.

Every tool's input is validated against its ``input_schema`` by the loop before the tool runs,
so each built-in's limits (``max_results`` 1–20, ``timeout`` up to 600 …) are enforced once, in
its schema, and a violation goes back to the model as a tool error naming the pointer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from puras_agent_runner.conversation import Content, Text, ToolSpec

if TYPE_CHECKING:
    from puras_media import Emit, MediaService

    from puras_agent_runner.drive import AgentDrive
    from puras_agent_runner.fetching import Fetcher
    from puras_agent_runner.sandbox import JobSandbox
    from puras_agent_runner.search import SearchProvider


class ToolError(Exception):
    """A tool call failed in a way the model should hear about (and may correct)."""

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


@dataclass(frozen=True)
class ToolOutput:
    """What a tool call returns to the model, and what its event shows."""

    content: tuple[Content, ...]
    is_error: bool = False
    summary: str | None = None
    """For the ``tool.completed`` event; the content's text by default."""
    detail: dict[str, Any] | None = None

    @classmethod
    def text(
        cls, text: str, *, is_error: bool = False, detail: dict[str, Any] | None = None
    ) -> ToolOutput:
        return cls((Text(text),), is_error=is_error, detail=detail)


@dataclass
class ToolContext:
    """What tools of one agent job may use."""

    job_id: str
    workspace_id: str
    workdir: Path
    deployment_root: Path
    skill_dir: Path
    env: dict[str, str]
    """The environment of bash and user tools: secrets, PURAS_*, PATH with the venv."""
    sandbox: JobSandbox
    drive: AgentDrive
    fetcher: Fetcher
    search: SearchProvider | None
    vision: bool
    pdf: bool
    seconds_left: Any = field(default=lambda: 3600.0)
    """A callable giving the wall-clock seconds the job has left."""
    media: MediaService | None = None
    emit: Emit | None = None
    """Publishes a billable call's usage events in the job's order (the journal)."""
    key_id: UUID | None = None
    attempt: int | None = None
    daily_cap_micros: int | None = None
    """The cap of ``key_id`` the job was submitted under (paid calls are held against it)."""
    cancelled: asyncio.Event | None = None


class Tool(Protocol):
    """A tool the agent may call."""

    spec: ToolSpec

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        """Run one call with validated ``args``; raise ToolError for a failure the model should see."""
        ...
