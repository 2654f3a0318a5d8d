"""Human in the loop: the bounds of a job's question and of the answer it waits for.

A job asks (an agent's ``request_input`` tool, a function's ``puras.request_input``) with a
prompt, a JSON Schema for the answer and a timeout; it then waits, holding no runner slot,
until ``POST /v1/jobs/{id}/input`` answers or the timeout passes. Both runners check a
question here before the job waits, and the gateway checks answers against the same bounds.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from puras_common.schemas import schema_problem

MAX_PROMPT_CHARS: Final = 4000
"""Longest question a job may ask, in characters."""
MAX_SCHEMA_BYTES: Final = 16 * 1024
"""Largest answer schema, as compact JSON."""
MAX_ANSWER_BYTES: Final = 32 * 1024
"""Largest answer, as compact JSON: every answer a function job got rides on its work message
when it runs again, so ten of them stay far below the bus's 1 MiB."""
MAX_REQUESTS_PER_JOB: Final = 10
"""Questions one job may ask in its life."""
DEFAULT_TIMEOUT_SECONDS: Final = 3600
MIN_TIMEOUT_SECONDS: Final = 1
MAX_TIMEOUT_SECONDS: Final = 7 * 24 * 3600
"""A question waits at most a week for its answer."""


class QuestionError(ValueError):
    """A job asked a question outside the bounds; the message says which and by how much."""


def check_question(prompt: Any, schema: Any, timeout_seconds: Any, *, asked: int) -> None:
    """Refuse a question the platform will not wait on; ``asked`` is how many the job has
    already had answered."""
    if asked >= MAX_REQUESTS_PER_JOB:
        raise QuestionError(
            f"the job has already asked {asked} questions; the limit is {MAX_REQUESTS_PER_JOB}"
        )
    if not isinstance(prompt, str) or not prompt.strip():
        raise QuestionError("the prompt must be a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise QuestionError(
            f"the prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}"
        )
    if not isinstance(schema, dict):
        raise QuestionError(
            f"the answer's schema must be a JSON object, not {type(schema).__name__}"
        )
    try:
        size = len(orjson.dumps(schema))
    except TypeError as exc:
        raise QuestionError(f"the answer's schema is not JSON: {exc}") from None
    if size > MAX_SCHEMA_BYTES:
        raise QuestionError(
            f"the answer's schema is {size} bytes as JSON; the limit is {MAX_SCHEMA_BYTES}"
        )
    if (problem := schema_problem(schema)) is not None:
        raise QuestionError(f"the answer's schema is not a valid JSON Schema: {problem}")
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int):
        raise QuestionError("timeout must be a whole number of seconds")
    if not MIN_TIMEOUT_SECONDS <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise QuestionError(
            f"timeout={timeout_seconds} is out of range: "
            f"{MIN_TIMEOUT_SECONDS}..{MAX_TIMEOUT_SECONDS} seconds"
        )
