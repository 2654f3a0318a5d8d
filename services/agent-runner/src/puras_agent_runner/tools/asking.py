"""``request_input``: the agent asks a person a question and waits for the answer.

The loop does not run this tool like the others: a valid call ends the attempt (the runner
saves the conversation and releases its slot and sandbox), and the job waits. The answer, once
``POST /v1/jobs/{id}/input`` gives it, comes back as this call's result (JSON text) when the job
runs on. Only a call the platform refuses to wait on reaches :meth:`RequestInputTool.run`,
which tells the model why.
"""

from __future__ import annotations

from typing import Any, Final

from puras_common.input_requests import (
    DEFAULT_TIMEOUT_SECONDS,
    MAX_PROMPT_CHARS,
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
    QuestionError,
    check_question,
)

from puras_agent_runner.conversation import ToolSpec
from puras_agent_runner.tools.base import ToolContext, ToolError, ToolOutput

NAME: Final = "request_input"


class RequestInputTool:
    """Asks a question whose answer must match a JSON Schema."""

    def __init__(self, *, answered: int = 0) -> None:
        self.answered = answered
        """Questions the job has had answered (a job asks a bounded number)."""
        self.spec = ToolSpec(
            NAME,
            "Ask a person a question and wait for their answer. The job pauses (for up to "
            "timeout_seconds) until someone answers; the answer, which matches `schema`, is this "
            "tool's result. Ask only when you cannot go on without a human decision or fact.",
            {
                "type": "object",
                "properties": {
                    "question": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_PROMPT_CHARS,
                        "description": "What to ask, as the person will read it.",
                    },
                    "schema": {
                        "type": "object",
                        "description": 'JSON Schema of the answer, e.g. {"type": "string"} or an object with the fields you need.',
                    },
                    "timeout_seconds": {
                        "type": "integer",
                        "minimum": MIN_TIMEOUT_SECONDS,
                        "maximum": MAX_TIMEOUT_SECONDS,
                        "description": f"How long to wait for the answer (default {DEFAULT_TIMEOUT_SECONDS}).",
                    },
                },
                "required": ["question", "schema"],
                "additionalProperties": False,
            },
        )

    def question(self, args: dict[str, Any]) -> tuple[str, dict[str, Any], int]:
        """The question a valid call asks; raises QuestionError for one the platform refuses."""
        timeout = args.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        check_question(args.get("question"), args.get("schema"), timeout, asked=self.answered)
        return args["question"], args["schema"], timeout

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        try:
            self.question(args)
        except QuestionError as exc:
            raise ToolError(str(exc)) from None
        raise ToolError("the question could not be asked")  # the loop asks valid questions
