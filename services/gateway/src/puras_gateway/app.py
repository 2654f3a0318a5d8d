"""The gateway's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from puras_common.http import install_error_handlers

from puras_gateway.context import Gateway
from puras_gateway.routes import (
    admin,
    billing,
    deployments,
    drive,
    events,
    feedback,
    jobs,
    keys,
    media,
    secrets,
    skillpacks,
    skills,
    subagents,
    system,
)


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(
        title="Puras API",
        version="1.0",
        description="Run deployed skills as jobs: async, sync or streamed.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    if gateway.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=gateway.settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Location", "X-Puras-Job-Id"],
        )
    for module in (jobs, events, feedback, skills, deployments, skillpacks, secrets, drive, admin, system, keys, billing, media, subagents):
        app.include_router(module.router)
    return app
