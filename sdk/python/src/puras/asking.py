"""``puras.request_input``: a function job asks a person (or an app) a question and waits for
the answer. Standard library only.

How a function waits: the first call without an answer ends the job's process (with
:class:`InputRequested`, which ``except Exception`` does not catch); the job is ``waiting``
and holds no runner slot. When ``POST /v1/jobs/{id}/input`` answers, the job runs again from
the start as a new attempt, and each ``request_input`` call returns the answers recorded so far
in order: the first call the first answer, and so on (replay). Code before a question therefore
runs once per answer: keep it free of side effects, or record what it did in ``./drive``.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["InputRequested", "request_input"]

ANSWERS_ENV = "PURAS_INPUT_ANSWERS"
"""The file holding the job's answers so far (a JSON list), set when there are some."""
DEFAULT_TIMEOUT = 3600

_answers: list[Any] | None = None
_asked = 0


class InputRequested(BaseException):
    """Ends the job's process to wait for an answer; the platform catches it. A BaseException,
    so a skill's ``except Exception`` does not swallow the question."""

    puras_quiet = True
    """The platform logs no traceback for it: asking is not a failure."""


def request_input(prompt: str, schema: dict[str, Any], timeout: int = DEFAULT_TIMEOUT) -> Any:
    """Ask ``prompt`` and return the answer, which matches the JSON Schema ``schema``.

    ``timeout``: seconds to wait for the answer, 1 to 604800 (a week); the job fails when none
    comes in time. A job asks at most 10 questions; the prompt is at most 4000 characters and
    the schema 16 KiB. Only in the job's main thread: the question ends the process.
    """
    global _asked
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("request_input: prompt must be a non-empty string")
    if not isinstance(schema, dict):
        raise ValueError("request_input: schema must be a JSON Schema (a dict)")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise ValueError("request_input: timeout must be a positive whole number of seconds")
    answers = _recorded()
    number = _asked
    _asked += 1
    if number < len(answers):
        return answers[number]
    if "PURAS_JOB_ID" not in os.environ:
        raise RuntimeError("request_input works only inside a job run by the platform")
    question = {"prompt": prompt, "schema": schema, "timeout_seconds": timeout}
    raise InputRequested(json.dumps(question, ensure_ascii=False))


def _recorded() -> list[Any]:
    global _answers
    if _answers is None:
        path = os.environ.get(ANSWERS_ENV)
        if not path:
            _answers = []
        else:
            with open(path, encoding="utf-8") as f:
                loaded = json.load(f)
            _answers = loaded if isinstance(loaded, list) else []
    return _answers
