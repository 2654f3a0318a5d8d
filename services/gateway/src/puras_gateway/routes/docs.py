"""``/docs``: the API reference (Swagger UI) with its assets served from the ``fastapi-offline``
package, so it renders on a machine without internet. Not part of the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import fastapi_offline
from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

ASSETS: Final = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH: Final = "/docs/assets"

router = APIRouter(include_in_schema=False)

assets = StaticFiles(directory=ASSETS)
"""Mounted at ``ASSETS_PATH`` by the app."""


@router.get("/docs")
async def swagger() -> Any:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Puras API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url="/console/static/favicon.svg",
    )
