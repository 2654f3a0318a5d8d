"""Agent runner settings (``PURAS_AGENT_RUNNER_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from typing import ClassVar

from puras_common.settings import ServiceSettings


class AgentRunnerSettings(ServiceSettings):
    service: ClassVar[str] = "agent-runner"
