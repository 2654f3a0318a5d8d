"""Reading request bodies: size-capped while streaming, JSON whatever the Content-Type says
(the spec's curl examples send none), and pydantic errors turned into JSON pointers."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from puras_common.api import MAX_PAGE_LIMIT, ApiError, ErrorCode, ErrorDetail, json_pointer
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB" if n >= 1024 * 1024 else f"{n / 1024:g} KiB"


async def read_capped(request: Request, limit: int, *, hint: str = "") -> bytes:
    """The body, or 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"request body is {int(declared)} bytes; the limit is {limit} bytes ({_mib(limit)}){hint}",
        )
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"request body exceeds the limit of {limit} bytes ({_mib(limit)}){hint}",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_model(model: type[M], raw: bytes) -> M:
    """``raw`` as JSON validated into ``model``; 400 with pointers otherwise."""
    if not raw.strip():
        raise ApiError(ErrorCode.INVALID_REQUEST, "request body is empty: send a JSON object")
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            ErrorCode.INVALID_REQUEST, f"request body is not valid JSON: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"request body must be a JSON object, not {type(data).__name__}",
            details=[ErrorDetail(pointer="", message="expected an object")],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            ErrorDetail(pointer=json_pointer(err["loc"]), message=_message(err))
            for err in exc.errors()
        ]
        first = details[0]
        raise ApiError(
            ErrorCode.INVALID_REQUEST, f"{first.message} at {first.pointer or '/'}", details=details
        ) from None


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "field required"
    return str(err["msg"])


def check_limit(limit: int) -> None:
    """``?limit=`` is 1–200 (§7 lists)."""
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"limit={limit} is out of range: pass 1 to {MAX_PAGE_LIMIT}",
            details=[{"pointer": "?limit", "message": f"must be in 1..{MAX_PAGE_LIMIT}"}],
        )
