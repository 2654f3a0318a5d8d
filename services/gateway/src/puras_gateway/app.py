"""The gateway's FastAPI application."""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from puras_common import served
from puras_common.http import install_error_handlers
from puras_common.observability import HttpMetrics

from puras_gateway import console as console_pages
from puras_gateway.context import Gateway
from puras_gateway.quotas import RateLimitHeaders
from puras_gateway.routes import (
    admin,
    billing,
    console,
    deployments,
    docs,
    drive,
    events,
    feedback,
    jobs,
    keys,
    media,
    members,
    ops,
    schedules,
    secrets,
    signin,
    skillpacks,
    skills,
    subagents,
    system,
    webhooks,
)

CORS_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
CORS_REQUEST_HEADERS: Final = ("Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key")
"""What a browser app sends: its key, JSON bodies, a stream's resume point, a retry's key."""
CORS_EXPOSED_HEADERS: Final = (
    "Location",
    "X-Puras-Job-Id",
    "Retry-After",
    "Idempotent-Replayed",
    "RateLimit",
    "RateLimit-Policy",
)


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(
        title="Puras API",
        version="1.0",
        description="Run deployed skills as jobs: async, sync or streamed.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(HttpMetrics, service="gateway")
    # Every drive answer, files and JSON and errors alike, is inert in a browser.
    app.add_middleware(served.InertResponses, prefix="/v1/drive/")
    if origins := gateway.settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            # No credentials: a session's cookie serves this gateway's own pages only, so a page
            # of another origin can never read an answer made with it.
            allow_credentials=False,
            allow_methods=list(CORS_METHODS),
            allow_headers=list(CORS_REQUEST_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
            max_age=600,
        )
    # Static files first: the console's page routes would otherwise take /console/static/….
    app.mount(docs.ASSETS_PATH, docs.assets, name="docs-assets")
    app.mount("/console/static", StaticFiles(directory=console_pages.STATIC), name="console-static")
    for module in (
        jobs,
        events,
        feedback,
        skills,
        deployments,
        skillpacks,
        secrets,
        drive,
        admin,
        ops,
        system,
        keys,
        billing,
        media,
        subagents,
        schedules,
        webhooks,
        signin,
        members,
        console,
        docs,
    ):
        app.include_router(module.router)
    return app
