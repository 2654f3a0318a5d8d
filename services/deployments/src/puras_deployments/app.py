"""The deployments service's internal HTTP listener. Only the platform's services can call it
(internal token): the gateway forwards tenants' requests under ``/internal/workspaces/{id}/``
(having authenticated the key), runners fetch bundles and wheelhouses."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from puras_common.api import ApiError, ErrorCode
from puras_common.archive import ArchiveError, Limits, extract
from puras_common.http import InternalAuth, install_error_handlers
from puras_common.observability import HttpMetrics
from puras_common.outbox import Outbox
from pydantic import BaseModel, ConfigDict

from puras_deployments import bundle, deployments, skillpacks
from puras_deployments.builds import Builder
from puras_deployments.settings import DeploymentsSettings
from puras_deployments.store import BundleStore
from puras_deployments.tenant_secrets import Secrets

SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Service:
    """What the listener's handlers share."""

    settings: DeploymentsSettings
    outbox: Outbox
    store: BundleStore
    secrets: Secrets
    builder: Builder | None = None


class VisibilityBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    visibility: Literal["private", "public"]


class SecretBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="Puras deployments (internal)", docs_url=None, redoc_url=None, openapi_url=None
    )
    install_error_handlers(app)
    app.state.internal_token = service.settings.internal_token.get_secret_value()
    app.include_router(_tenant_routes(service))
    app.include_router(_runner_routes(service))
    app.add_middleware(HttpMetrics, service="deployments")
    return app


def _tenant_routes(svc: Service) -> APIRouter:
    router = APIRouter(prefix="/internal/workspaces/{workspace_id}")
    settings = svc.settings
    limits = Limits(
        max_entries=settings.max_entries,
        max_total_bytes=settings.max_uncompressed_bytes,
        max_ratio=settings.max_ratio,
    )

    @router.post("/deployments")
    async def push(
        request: Request,
        _auth: InternalAuth,
        workspace_id: UUID,
        skillpack: Annotated[str, Query()] = skillpacks.DEFAULT,
        notes: Annotated[str, Query(max_length=2000)] = "",
        activate: bool = True,
    ) -> Any:
        skillpacks.check_ref(skillpack)
        received = await svc.store.receive(request.stream(), limit=settings.max_bundle_bytes)
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
                ErrorCode.INVALID_BUNDLE,
                f"{first}{more}",
                details=[p.as_detail() for p in report.problems],
            )
        await svc.store.keep(received)
        body = await deployments.create(
            svc.outbox,
            svc.store,
            workspace_id=workspace_id,
            skillpack=skillpack,
            notes=notes,
            activate=activate,
            skills=report.skills,
            requirements=report.requirements,
            bundle_sha256=received.sha256,
            bundle_bytes=received.size,
        )
        if body["status"] == "building" and svc.builder is not None:
            svc.builder.wake()
        return JSONResponse(body, status_code=201 if body["status"] == "ready" else 202)

    @router.get("/deployments")
    async def list_deployments(
        _auth: InternalAuth,
        workspace_id: UUID,
        skillpack: str = skillpacks.DEFAULT,
        limit: Annotated[int, Query(ge=1, le=deployments.MAX_PAGE)] = 25,
        cursor: Annotated[int | None, Query(ge=1)] = None,
    ) -> Any:
        return await deployments.listing(
            svc.outbox.pool,
            workspace_id=workspace_id,
            skillpack=skillpack,
            limit=limit,
            cursor=cursor,
        )

    @router.get("/deployments/{deployment_id}")
    async def describe(_auth: InternalAuth, workspace_id: UUID, deployment_id: UUID) -> Any:
        return await deployments.describe(
            svc.outbox.pool, workspace_id=workspace_id, deployment_id=deployment_id
        )

    @router.post("/deployments/{deployment_id}/activate")
    async def activate_deployment(
        _auth: InternalAuth,
        workspace_id: UUID,
        deployment_id: UUID,
        traffic_percent: Annotated[int | None, Query(ge=1, le=100)] = None,
    ) -> Any:
        return await deployments.activate(
            svc.outbox,
            workspace_id=workspace_id,
            deployment_id=deployment_id,
            traffic_percent=traffic_percent,
        )

    @router.post("/deployments/{deployment_id}/promote")
    async def promote_deployment(
        _auth: InternalAuth, workspace_id: UUID, deployment_id: UUID
    ) -> Any:
        return await deployments.promote(
            svc.outbox, workspace_id=workspace_id, deployment_id=deployment_id
        )

    @router.post("/deployments/{deployment_id}/rollback")
    async def rollback_deployment(
        _auth: InternalAuth, workspace_id: UUID, deployment_id: UUID
    ) -> Any:
        return await deployments.rollback(
            svc.outbox, workspace_id=workspace_id, deployment_id=deployment_id
        )

    @router.delete("/deployments/{deployment_id}")
    async def delete_deployment(
        _auth: InternalAuth, workspace_id: UUID, deployment_id: UUID
    ) -> Any:
        return await deployments.delete(
            svc.outbox, workspace_id=workspace_id, deployment_id=deployment_id
        )

    @router.get("/skillpacks")
    async def list_skillpacks(_auth: InternalAuth, workspace_id: UUID) -> Any:
        return {"data": await skillpacks.listing(svc.outbox.pool, workspace_id)}

    @router.get("/skillpacks/{ref}")
    async def describe_skillpack(_auth: InternalAuth, workspace_id: UUID, ref: str) -> Any:
        return await skillpacks.describe(svc.outbox.pool, workspace_id, ref)

    @router.patch("/skillpacks/{ref}")
    async def update_skillpack(
        _auth: InternalAuth, workspace_id: UUID, ref: str, body: VisibilityBody
    ) -> Any:
        return await skillpacks.set_visibility(svc.outbox, workspace_id, ref, body.visibility)

    @router.get("/secrets")
    async def list_secrets(
        _auth: InternalAuth, workspace_id: UUID, skillpack: str = skillpacks.DEFAULT
    ) -> Any:
        return await svc.secrets.listing(
            svc.outbox.pool, workspace_id=workspace_id, skillpack=skillpack
        )

    @router.put("/secrets/{name}")
    async def put_secret(
        _auth: InternalAuth,
        workspace_id: UUID,
        name: str,
        body: SecretBody,
        skillpack: str = skillpacks.DEFAULT,
    ) -> Any:
        return await svc.secrets.put(
            workspace_id=workspace_id, skillpack=skillpack, name=name, value=body.value
        )

    @router.delete("/secrets/{name}")
    async def delete_secret(
        _auth: InternalAuth, workspace_id: UUID, name: str, skillpack: str = skillpacks.DEFAULT
    ) -> Any:
        return await svc.secrets.delete(workspace_id=workspace_id, skillpack=skillpack, name=name)

    return router


def _runner_routes(svc: Service) -> APIRouter:
    router = APIRouter(prefix="/internal")

    @router.get("/deployments/{deployment_id}")
    async def manifest(deployment_id: UUID, _auth: InternalAuth) -> Any:
        row = await deployments.get(svc.outbox.pool, deployment_id)
        return {
            "id": str(row["id"]),
            "workspace_id": str(row["workspace_id"]),
            "version": row["version"],
            "status": row["status"],
            "bundle_sha256": row["bundle_sha256"],
            "has_requirements": row["has_requirements"],
            "requirements_sha256": row["requirements_sha256"],
            "skills": row["skills"],
        }

    @router.get("/deployments/{deployment_id}/bundle")
    async def download(deployment_id: UUID, _auth: InternalAuth) -> Any:
        row = await deployments.get(svc.outbox.pool, deployment_id)
        path = await svc.store.bundle(row["bundle_sha256"])
        return FileResponse(path, media_type="application/zip")

    @router.get("/builds/{sha}/wheelhouse")
    async def wheels(sha: str, _auth: InternalAuth) -> Any:
        path = await svc.store.built_wheelhouse(sha) if SHA256.match(sha) else None
        if path is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"no wheelhouse for requirements {sha[:64]!r}")
        return FileResponse(path, media_type="application/x-tar")

    return router


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
