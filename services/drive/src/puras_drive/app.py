"""The drive's internal HTTP listener (platform services only)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from puras_common.api import ApiError, ErrorCode
from puras_common.http import InternalAuth, install_error_handlers

from puras_drive.payloads import PayloadFiles
from puras_drive.settings import DriveSettings


def create_app(settings: DriveSettings, payloads: PayloadFiles) -> FastAPI:
    app = FastAPI(title="Puras drive (internal)", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.state.internal_token = settings.internal_token.get_secret_value()

    @app.put("/internal/payloads/{key:path}")
    async def put_payload(key: str, request: Request, _auth: InternalAuth) -> Any:
        size = await payloads.write(key, request.stream(), limit=settings.max_payload_bytes)
        return JSONResponse({"key": key, "bytes": size}, status_code=201)

    @app.get("/internal/payloads/{key:path}")
    async def get_payload(key: str, _auth: InternalAuth) -> Any:
        path = payloads.path(key)
        if not path.is_file():
            raise ApiError(ErrorCode.NOT_FOUND, f"payload {key} not found")
        return FileResponse(path, media_type="application/json")

    return app
