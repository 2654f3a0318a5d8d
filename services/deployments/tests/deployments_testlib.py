"""Helpers of the deployments service tests: the service in-process (its internal HTTP app, its
builder and its secrets responder) on a fresh schema of the session's PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import tempfile
import textwrap
import uuid
import zipfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from nats.aio.client import Client as NATS
from puras_common.logging import get_logger
from puras_common.migrate import service_migrations
from puras_common.secret_delivery import SUBJECT
from puras_deployments import app as app_module
from puras_deployments.__main__ import build_sandbox
from puras_deployments.app import Service, create_app
from puras_deployments.builds import Builder
from puras_deployments.settings import DeploymentsSettings
from puras_deployments.store import BundleStore
from puras_deployments.tenant_secrets import Secrets
from puras_deployments.vault import MasterKeys
from puras_testing import Infra, Scratch, scratch_schema
from puras_testing.wheels import INDEX_PORT

MASTER_KEY = "11" * 32
JOB_TOKEN_KEY = "job-token-key-for-tests"
TOKEN = "internal-token-for-tests"


def project_zip(files: Mapping[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(
                name,
                content if isinstance(content, bytes) else textwrap.dedent(content).lstrip("\n"),
            )
    return buffer.getvalue()


ECHO = {
    "skills/echo/skill.yaml": "description: Echo.\nentrypoint: main.py:run\n",
    "skills/echo/main.py": "def run(inputs):\n    return inputs\n",
}


@dataclass
class Harness:
    db: Scratch
    service: Service
    builder: Builder
    http: httpx.AsyncClient
    data_dir: Path
    secrets_subject: str
    """Where this copy answers secrets requests (the session's platform answers the real one)."""

    async def push(
        self, workspace: UUID, files: Mapping[str, str | bytes], **params: Any
    ) -> httpx.Response:
        query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}
        return await self.http.post(
            f"/internal/workspaces/{workspace}/deployments",
            params=query,
            content=project_zip(files),
        )

    async def events(self, *types: str) -> list[dict[str, Any]]:
        rows = await self.db.pool.fetch("SELECT type, body FROM outbox ORDER BY seq")
        return [r["body"] for r in rows if not types or r["type"] in types]


@contextlib.asynccontextmanager
async def running(infra: Infra, nc: NATS, **overrides: Any) -> AsyncIterator[Harness]:
    data_dir = Path(tempfile.mkdtemp(prefix="puras-deployments-test-"))
    data_dir.chmod(0o711)
    try:
        async with scratch_schema(
            infra.admin_database_dsn, service_migrations("deployments", app_module.__file__)
        ) as db:
            settings = DeploymentsSettings(
                data_dir=data_dir,
                internal_token=TOKEN,
                secrets_key=MASTER_KEY,
                job_token_key=JOB_TOKEN_KEY,
                build_timeout_seconds=120,
                **{"egress_test_allow": f"127.0.0.1:{INDEX_PORT}", **overrides},
            )
            store = BundleStore(data_dir)
            (data_dir / "builds").mkdir(mode=0o711)
            (data_dir / "tools").mkdir()
            secrets = Secrets(
                db.outbox, MasterKeys.from_settings(MASTER_KEY), job_token_key=JOB_TOKEN_KEY
            )
            builder = Builder(
                outbox=db.outbox,
                store=store,
                sandbox=await asyncio.to_thread(build_sandbox, settings, get_logger("test")),
                work_root=data_dir / "builds",
                concurrency=2,
                lease_seconds=30,
                max_log_bytes=64 * 1024,
            )
            service = Service(
                settings=settings, outbox=db.outbox, store=store, secrets=secrets, builder=builder
            )

            async def answer(msg: Any) -> None:
                await secrets.answer(db.pool, msg)

            subject = f"{SUBJECT}.test-{uuid.uuid4().hex}"
            sub = await nc.subscribe(subject, cb=answer)
            task = asyncio.create_task(builder.run())
            transport = httpx.ASGITransport(app=create_app(service))
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://deployments",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as http:
                try:
                    yield Harness(db, service, builder, http, data_dir, subject)
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    await sub.unsubscribe()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
