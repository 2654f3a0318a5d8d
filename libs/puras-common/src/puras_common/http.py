"""HTTP plumbing for the services that listen (gateway, deployments, drive): serving an ASGI
app inside the service's own event loop, the one error body, and internal-listener auth.

Imports of the web stack happen here only, so services without HTTP never load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Iterator
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from puras_common.api import ApiError, ErrorCode, ErrorDetail, json_pointer
from puras_common.errors import dependency_down
from puras_common.logging import get_logger

log = get_logger("puras_common.http")


RETRY_AFTER_SECONDS = 2
"""What a 503 asks a client to wait while a dependency is down: about a supervisor's restart."""


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service runtime owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(app: Any, *, host: str, port: int, backlog: int = 4096) -> None:
    """Serve ``app`` until cancelled, then finish in-flight requests and stop."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        backlog=backlog,
        timeout_keep_alive=30,
        loop="none",
        http="httptools",
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        raise
    if server.started is False:
        raise OSError(f"could not listen on {host}:{port}")


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as ``{"error": {"code", "message", "details"}}``; never a bare 500."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            ErrorDetail(
                pointer=json_pointer(tuple(err.get("loc", ()))), message=err.get("msg", "invalid")
            )
            for err in exc.errors()
        ]
        first = details[0] if details else None
        message = f"{first.message} at {first.pointer}" if first else "invalid request"
        return error_response(ApiError(ErrorCode.INVALID_REQUEST, message, details=details))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            404: ErrorCode.NOT_FOUND,
            405: ErrorCode.METHOD_NOT_ALLOWED,
            413: ErrorCode.PAYLOAD_TOO_LARGE,
            415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            409: ErrorCode.CONFLICT,
        }.get(
            exc.status_code,
            ErrorCode.INVALID_REQUEST if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR,
        )
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
        return JSONResponse(
            {"error": {"code": code.value, "message": message, "details": None}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if dependency_down(exc):
            # PostgreSQL or NATS is away (restarting, failing over): the request may succeed
            # in a moment, and the client is told so instead of getting a 500.
            log.warning("dependency unavailable", path=request.url.path, error=repr(exc)[:300])
            return error_response(
                ApiError(
                    ErrorCode.UNAVAILABLE,
                    "a service this request needs is briefly unavailable; retry shortly",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            )
        log.exception("unhandled error", path=request.url.path, method=request.method)
        return error_response(
            ApiError(ErrorCode.INTERNAL_ERROR, "internal error; it has been logged")
        )


async def require_internal_token(request: Request) -> None:
    """Internal listeners accept only the platform's shared token (``app.state.internal_token``),
    compared in constant time. (A coroutine, so FastAPI does not hand it to its thread pool.)"""
    token: str = request.app.state.internal_token
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise ApiError(ErrorCode.FORBIDDEN, "internal endpoint: platform token required")


InternalAuth = Annotated[None, Depends(require_internal_token)]
