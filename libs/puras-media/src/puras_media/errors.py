"""Errors of a media call: a stable ``code``, the upstream's own message, and the HTTP status
the gateway answers with (the agent's ``media`` tool shows the same code and message).

==================  =====  ==========================================================
code                HTTP   when
==================  =====  ==========================================================
unknown_model       400    the slug is in no catalogue; nothing was sent upstream
invalid_request     400    the arguments cannot be used (a path, an unpriceable input,
                           a mode the model family cannot do); nothing was sent
upstream_rejected   400    the model refused the inputs (validation, content policy)
upstream_failed     502    the model failed, or its API answered with an error
upstream_timeout    504    no result within the wait; the upstream request was cancelled
no_output           502    the response holds no file URL where one was looked for
download_failed     502    the output file could not be fetched from the upstream
storage_failed      503    the file could not be saved into the drive
insufficient_credits 402   its quote could not be held: the balance does not cover it
spend_cap_reached   429    its quote could not be held: the key's daily cap is spent
==================  =====  ==========================================================

A call that ends in any of these is never billed; the last two are refused before anything is
sent upstream (budgets as holds, docs/money.md).
"""

from __future__ import annotations

from typing import Any, Final

STATUS: Final = {
    "unknown_model": 400,
    "invalid_request": 400,
    "upstream_rejected": 400,
    "upstream_failed": 502,
    "upstream_timeout": 504,
    "no_output": 502,
    "download_failed": 502,
    "storage_failed": 503,
    "insufficient_credits": 402,
    "spend_cap_reached": 429,
}


class MediaError(Exception):
    """A media call that did not produce a result; ``code`` is one of :data:`STATUS`."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        model: str | None = None,
        pointer: str | None = None,
        request_id: str | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        assert code in STATUS, code
        self.code = code
        self.message = message
        self.model = model
        self.pointer = pointer
        self.request_id = request_id
        self.upstream_status = upstream_status

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def details(self) -> dict[str, Any]:
        """What the API's error ``details`` carry: the media code and where it went wrong."""
        detail: dict[str, Any] = {"media_code": self.code, "model": self.model}
        if self.pointer is not None:
            detail["pointer"] = self.pointer
        if self.request_id is not None:
            detail["request_id"] = self.request_id
        if self.upstream_status is not None:
            detail["upstream_status"] = self.upstream_status
        return detail


class PortableError(ValueError):
    """A portable helper's arguments that no model of the family can take (raised before any
    upstream call; the SDK surfaces it as ``ValueError``)."""

    def __init__(self, message: str, *, pointer: str | None = None) -> None:
        super().__init__(message)
        self.pointer = pointer
