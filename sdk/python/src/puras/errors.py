"""Exceptions raised by the client and the in-skill runtime."""

from __future__ import annotations

from typing import Any


class PurasError(Exception):
    """Base of every error this package raises."""


class PurasAPIError(PurasError):
    """A non-2xx response from the Puras API: ``status``, ``code`` and ``message`` from its body;
    ``retry_after``, the seconds its ``Retry-After`` asks to wait (a 429), or None."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        body: Any = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.body = body
        self.retry_after = retry_after


class JobError(PurasError):
    """A job ended in a state other than succeeded, or was still running when the wait ended."""

    def __init__(self, job: dict[str, Any], message: str | None = None) -> None:
        status = job.get("status")
        super().__init__(
            message or f"job {job.get('id')} {status}: {job.get('error') or 'no result'}"
        )
        self.job = job
        self.job_id = job.get("id")
        self.status = status
        self.error = job.get("error")


class SecretError(PurasError, KeyError):
    """A skillpack secret that is not set."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "secret not set"
