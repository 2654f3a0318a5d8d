"""``set_output``: the structured result of an agent job, offered only when the skill declares
an ``output_schema``; its input schema is that schema, so the loop's validation of the call's
arguments is the validation of the job's result."""

from __future__ import annotations

from typing import Any, Final

from puras_agent_runner.conversation import ToolSpec
from puras_agent_runner.tools.base import ToolContext, ToolOutput

NAME: Final = "set_output"
WRAPPED_KEY: Final = "output"


def is_object_schema(schema: dict[str, Any] | bool) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "object"


class SetOutputTool:
    """Records the job's output; calling it (validly) ends the run."""

    def __init__(self, output_schema: dict[str, Any] | bool, *, required: bool = True) -> None:
        self.required = required
        """False for a subagent's free-form output: a run that ends without it returns its text."""
        # Providers take object schemas only: any other output is wrapped as {"output": ...}.
        schema: dict[str, Any] = (
            output_schema
            if isinstance(output_schema, dict) and is_object_schema(output_schema)
            else {
                "type": "object",
                "properties": {WRAPPED_KEY: output_schema},
                "required": [WRAPPED_KEY],
                "additionalProperties": False,
            }
        )
        self.wrapped = schema is not output_schema
        self.spec = ToolSpec(
            NAME,
            "Record the final structured output for this job. Calling this ends the run. The argument must "
            "match the schema; call it exactly once, when you are done.",
            schema,
        )

    def output(self, args: dict[str, Any]) -> Any:
        """The job's result from a valid call's arguments."""
        return args[WRAPPED_KEY] if self.wrapped else args

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        return ToolOutput.text("output recorded; the run is over")
