"""The tools an agent job offers its model: the built-ins, the skill's own, and set_output."""

from __future__ import annotations

from typing import Any

from puras_agent_runner.tools.asking import RequestInputTool
from puras_agent_runner.tools.base import Tool, ToolContext, ToolError, ToolOutput
from puras_agent_runner.tools.bash import BashTool
from puras_agent_runner.tools.files import DownloadUrlTool, FileReadTool
from puras_agent_runner.tools.media import MediaTool
from puras_agent_runner.tools.output import SetOutputTool
from puras_agent_runner.tools.search import ImageSearchTool, WebSearchTool
from puras_agent_runner.tools.user import UserTool
from puras_agent_runner.tools.web import WebFetchTool


def toolset(
    manifest: dict[str, Any], *, model: str, free_output: bool = False, answered: int = 0
) -> dict[str, Tool]:
    """The tools of a skill, by name, in the order the model sees them.

    ``bash`` unless ``disable_bash``; ``media``, ``web_search``, ``image_search``,
    ``web_fetch``, ``file_read``, ``download_url``, ``request_input`` always (``answered``:
    the questions the job has had answered); the skill's ``tools:``; ``set_output``
    when it has an ``output_schema``. A subagent run from a markdown file or an inline prompt
    (``free_output``) gets the built-ins and a free-form ``set_output``, not the skill's own.
    """
    tools: list[Tool] = []
    if not manifest.get("disable_bash"):
        tools.append(BashTool())
    tools += [
        MediaTool(),
        WebSearchTool(),
        ImageSearchTool(),
        WebFetchTool(),
        FileReadTool(model),
        DownloadUrlTool(),
        RequestInputTool(answered=answered),
    ]
    if free_output:
        tools.append(SetOutputTool({}, required=False))
        return {t.spec.name: t for t in tools}
    tools += [UserTool(t) for t in manifest.get("tools") or ()]
    if manifest.get("output_schema") is not None:
        tools.append(SetOutputTool(manifest["output_schema"]))
    return {t.spec.name: t for t in tools}


__all__ = ["SetOutputTool", "Tool", "ToolContext", "ToolError", "ToolOutput", "toolset"]
