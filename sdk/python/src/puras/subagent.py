"""``puras.subagent``: run another skill, a markdown file of this bundle, or an inline prompt
as a child job of this one, and wait for its result. Standard library only.

The child is a real job (its ``parent_job_id`` is this job): billed to this workspace, counted
in this job's ``total_cost_micros``, and cancelled if this job is cancelled or ends first.
"""

from __future__ import annotations

import math
import time
from typing import Any

from puras import _jobapi
from puras._paths import api_path
from puras.errors import PurasError

POLL_SECONDS = 60
"""Longest single wait the platform holds a request for; longer waits are several requests."""

__all__ = ["SubagentRunError", "run"]


class SubagentRunError(PurasError):
    """The child failed, was cancelled, or did not finish within ``timeout``.

    ``job_id`` is the child's id (its events and logs are under it); ``status`` is ``failed``,
    ``cancelled``, ``queued`` or ``running``; ``message`` is the child's error or a timeout note.
    """

    def __init__(self, job_id: str, status: str, message: str) -> None:
        super().__init__(f"subagent {job_id} {status}: {message}")
        self.job_id = job_id
        self.status = status
        self.message = message


def run(
    target: str | None = None,
    inputs: dict[str, Any] | None = None,
    *,
    prompt: str | None = None,
    version: int | None = None,
    timeout: int = 600,
) -> Any:
    """Run a subagent synchronously and return its output. Pass exactly one of ``target``
    and ``prompt``.

    ``target``: ``"references/foo.md"`` (any ``*.md`` path, relative to this skill's folder: run
    as an agent in this deployment, inputs passed verbatim), ``"skill_name"`` (this skillpack),
    ``"skillpack/skill"`` (this workspace) or ``"workspace/skillpack/skill"`` (a public
    skillpack). A declared skill's ``input_schema`` is checked before the child is queued.
    ``prompt``: an inline system prompt, run as an agent with the built-in tools and a free-form
    ``set_output``. ``version`` pins a declared skill's deployment; it is an error with a prompt
    or a markdown file. ``timeout``: seconds to wait for the child (it keeps its own job timeout).

    Returns the child's result (for agents, what was passed to ``set_output``). Raises
    :class:`SubagentRunError` when the child fails, is cancelled or is not done in time, and
    ``ValueError`` for arguments that cannot work.
    """
    if (target is None) == (prompt is None):
        raise ValueError("pass exactly one of target (a skill or a .md file) and prompt")
    if target is not None and (not isinstance(target, str) or not target.strip()):
        raise ValueError(
            "target must be a skill address or a .md path, such as 'summarise' or 'references/critic.md'"
        )
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise ValueError("prompt must be a non-empty system prompt")
    if version is not None:
        if prompt is not None or (target or "").endswith(".md"):
            raise ValueError(
                "version pins a declared skill; a prompt or a .md file always runs on this job's own deployment"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be a deployment version ≥ 1, not {version!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if inputs is not None and not isinstance(inputs, dict):
        raise ValueError("inputs must be a dict")
    body: dict[str, Any] = {"inputs": inputs or {}}
    for name, value in (("target", target), ("prompt", prompt), ("version", version)):
        if value is not None:
            body[name] = value
    deadline = time.monotonic() + timeout
    job = _jobapi.call("POST", "/v1/subagents", body, what="puras.subagent")
    while job["status"] not in _jobapi.TERMINAL:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SubagentRunError(
                str(job["id"]),
                job["status"],
                f"did not finish within {timeout:g} s (it keeps running under its own job timeout)",
            )
        wait = max(1, min(POLL_SECONDS, math.ceil(left)))
        job = _jobapi.call(
            "GET",
            f"{api_path('/v1/subagents/{}', job['id'])}?wait={wait}",
            timeout=wait + 30,
            what="puras.subagent",
        )
    if job["status"] == "succeeded":
        return job.get("result")
    return _raise(job)


def _raise(job: dict[str, Any]) -> Any:
    raise SubagentRunError(str(job["id"]), job["status"], job.get("error") or job["status"])
