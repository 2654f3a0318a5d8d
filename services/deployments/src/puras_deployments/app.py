"""The deployments service's internal HTTP listener: bundles in from the gateway, bundles out
to runners. Only the platform's services can call it (internal token)."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from puras_common.api import ApiError, ErrorCode
from puras_common.archive import ArchiveError, Limits, extract
from puras_common.http import InternalAuth, install_error_handlers
from puras_common.outbox import Outbox

from puras_deployments import bundle, deployments
from puras_deployments.settings import DeploymentsSettings
from puras_deployments.store import BundleStore

SKILLPACK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def create_app(settings: DeploymentsSettings, outbox: Outbox, store: BundleStore) -> FastAPI:
    app = FastAPI(title="Puras deployments (internal)", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.state.internal_token = settings.internal_token.get_secret_value()
    limits = Limits(
        max_entries=settings.max_entries,
        max_total_bytes=settings.max_uncompressed_bytes,
        max_ratio=settings.max_ratio,
    )

    @app.post("/internal/deployments", status_code=201)
    async def push(
        request: Request,
        _auth: InternalAuth,
        workspace_id: UUID,
        skillpack: Annotated[str, Query()] = "default",
        notes: Annotated[str, Query(max_length=2000)] = "",
        activate: bool = True,
    ) -> Any:
        if not SKILLPACK.match(skillpack):
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                f"skillpack {skillpack!r} must match ^[a-z0-9][a-z0-9_-]{{0,62}}$",
                details=[{"pointer": "/skillpack", "message": "invalid skillpack slug"}],
            )
        received = await store.receive(request.stream(), limit=settings.max_bundle_bytes)
        try:
            report = await asyncio.to_thread(_inspect, received.path, limits)
        except BaseException:
            received.path.unlink(missing_ok=True)
            raise
        if report.problems:
            received.path.unlink(missing_ok=True)
            first = report.problems[0]
            more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
            raise ApiError(
                ErrorCode.INVALID_BUNDLE, f"{first}{more}", details=[p.as_detail() for p in report.problems]
            )
        store.keep(received)
        body = await deployments.create(
            outbox,
            workspace_id=workspace_id,
            skillpack=skillpack,
            notes=notes,
            activate=activate,
            skills=report.skills,
            bundle_sha256=received.sha256,
            bundle_bytes=received.size,
            has_requirements=report.has_requirements,
        )
        return JSONResponse(body, status_code=201)

    @app.get("/internal/deployments/{deployment_id}")
    async def describe(deployment_id: UUID, _auth: InternalAuth) -> Any:
        row = await deployments.get(outbox.pool, deployment_id)
        return {
            "id": str(row["id"]),
            "version": row["version"],
            "status": row["status"],
            "bundle_sha256": row["bundle_sha256"],
            "has_requirements": row["has_requirements"],
            "skills": row["skills"],
        }

    @app.get("/internal/deployments/{deployment_id}/bundle")
    async def download(deployment_id: UUID, _auth: InternalAuth) -> Any:
        row = await deployments.get(outbox.pool, deployment_id)
        return FileResponse(store.path(row["bundle_sha256"]), media_type="application/zip")

    return app


def _inspect(zip_path: Path, limits: Limits) -> bundle.BundleReport:
    """Extract into a scratch directory with every safety check, then read the skills."""
    scratch = Path(tempfile.mkdtemp(prefix="bundle-"))
    try:
        try:
            extract(zip_path, scratch / "project", limits=limits)
        except ArchiveError as exc:
            report = bundle.BundleReport()
            report.problems.append(bundle.Problem(exc.member or "bundle.zip", None, exc.reason))
            return report
        return bundle.read_bundle(scratch / "project")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
