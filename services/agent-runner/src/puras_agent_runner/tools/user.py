"""A skill's own tools (``tools:`` in skill.yaml): Python functions run in the agent job's own
workdir through the sandbox, their schemas enforced both ways.

The loop validates the model's arguments against ``input_schema`` before the call; the value the
function returns is validated against ``output_schema`` before the model sees it. A failure on
either side, an exception or a crash goes back to the model as a tool error, never fails the job.
"""

from __future__ import annotations

import json
import signal
from typing import Any

from puras_common.schemas import Schema, validate_off_loop

from puras_agent_runner.conversation import ToolSpec
from puras_agent_runner.tools.base import ToolContext, ToolError, ToolOutput

ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _provider_schema(schema: Schema | None) -> dict[str, Any]:
    """A tool's input schema as providers take it: an object schema. The boolean schemas
    become their object equivalents (``true`` any arguments, ``false`` none)."""
    if isinstance(schema, dict) and schema:
        return schema
    if schema is False:
        return {**ANY_OBJECT, "not": {}}
    return ANY_OBJECT


class UserTool:
    """One declared tool."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.spec = ToolSpec(
            manifest["name"],
            manifest["description"],
            _provider_schema(manifest.get("input_schema")),
        )
        self.output_schema: Schema | None = manifest.get("output_schema")
        file, _, self.function = manifest["entrypoint"].partition(":")
        self.module = file[: -len(".py")].replace("/", ".")

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        left = ctx.seconds_left()
        if left <= 0:
            raise ToolError("the job has no time left to run a tool")
        result = await ctx.sandbox.call(
            import_dir=str(ctx.skill_dir),
            module=self.module,
            function=self.function,
            payload=args,
            timeout=left,
        )
        value = self._value(result)
        if self.output_schema is not None and (
            problems := await validate_off_loop(self.output_schema, value, root=("output",))
        ):
            first = problems[0]
            raise ToolError(
                f"tool {self.spec.name!r} returned output that does not match its output_schema: "
                f"{first.message} at {first.pointer}",
                detail={"problems": [p.model_dump() for p in problems]},
            )
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return ToolOutput.text(text)

    def _value(self, result: Any) -> Any:
        outcome = result.outcome
        stderr = (
            f"\nstderr (last lines):\n{result.stderr.strip()[-2000:]}"
            if result.stderr.strip()
            else ""
        )
        if result.timed_out:
            raise ToolError(
                f"tool {self.spec.name!r} ran out of the job's time and was killed{stderr}"
            )
        if outcome.result is None:
            how = (
                f"was killed by {signal.Signals(outcome.signal).name}"
                if outcome.signal
                else f"exited with code {outcome.exit_code}"
            )
            raise ToolError(f"tool {self.spec.name!r} {how} before returning a result{stderr}")
        if outcome.result.get("ok"):
            return outcome.result.get("value")
        error = outcome.result.get("error") or {}
        kind, message = error.get("type", "Error"), error.get("message", "")
        raise ToolError(
            f"tool {self.spec.name!r} raised {kind}: {message}{stderr}", detail={"type": kind}
        )
