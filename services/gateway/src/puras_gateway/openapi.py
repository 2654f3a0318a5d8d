"""The error answers the OpenAPI document lists for the job-facing routers: every one is the
public error body of §7 (``{"error": {code, message, details}}``)."""

from __future__ import annotations

from typing import Any, Final

from puras_common.api import ErrorBody
from pydantic import BaseModel

ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Invalid request"),
        (401, "Missing, malformed, invalid or revoked API key"),
        (403, "Forbidden for this key"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Payload too large"),
        (422, "Inputs do not match the skill's input_schema"),
    )
}


def optional_json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads an optional JSON body itself."""
    return {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
