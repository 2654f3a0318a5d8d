"""``bash``: a shell command in the job's working directory, through the sandbox."""

from __future__ import annotations

import signal
from typing import Any, Final

from puras_agent_runner.conversation import ToolSpec
from puras_agent_runner.sandbox import OUTPUT_TAIL_BYTES
from puras_agent_runner.tools.base import ToolContext, ToolError, ToolOutput

DEFAULT_TIMEOUT: Final = 60
MAX_TIMEOUT: Final = 600

SPEC = ToolSpec(
    name="bash",
    description=(
        "Run a shell command in the job's working directory. The current dir contains a `drive/` folder "
        "for files that should persist across jobs (synced to project storage); anything written elsewhere "
        "is ephemeral. $PURAS_DEPLOYMENT_ROOT is the deployment bundle, the skill's venv is on PATH and the "
        "project's secrets are environment variables. Returns the exit code and the combined stdout+stderr "
        "(last 8KB only; redirect larger output to a file)."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "minLength": 1,
                "description": "Shell command to execute",
            },
            "timeout": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_TIMEOUT,
                "description": f"Max seconds (default {DEFAULT_TIMEOUT}, hard ceiling {MAX_TIMEOUT})",
            },
        },
        "required": ["command"],
        "additionalProperties": False,
    },
)


class BashTool:
    spec = SPEC

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        asked = int(args.get("timeout", DEFAULT_TIMEOUT))
        left = ctx.seconds_left()
        if left <= 0:
            raise ToolError("the job has no time left to run a command")
        timeout = min(asked, left)
        result = await ctx.sandbox.shell(args["command"], timeout=timeout)
        cut = result.output_bytes > OUTPUT_TAIL_BYTES
        head = (
            f"exit code: {result.exit_code}"
            if result.exit_code is not None
            else _killed(result.signal)
        )
        if result.timed_out:
            head = f"timed out after {timeout:g} s; the command and its children were killed"
        size = f" (the last {OUTPUT_TAIL_BYTES} of {result.output_bytes} bytes)" if cut else ""
        text = (
            f"{head}\noutput{size}:\n{result.output}" if result.output else f"{head}\n(no output)"
        )
        detail = {
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "output_bytes": result.output_bytes,
        }
        return ToolOutput.text(text, is_error=result.timed_out, detail=detail)


def _killed(sig: int | None) -> str:
    name = signal.Signals(sig).name if sig else "a signal"
    return f"killed by {name}"
