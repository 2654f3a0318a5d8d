"""A whole platform for tests: every service as its own process, as in production, against the
session's NATS and PostgreSQL (:mod:`puras_testing`), with helpers to create
workspaces and push projects over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
import textwrap
import zipfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from puras_cli.bundles import zip_project
from puras_cli.engines import free_port
from puras_cli.platform import MODULES, START_ORDER, PlatformConfig
from puras_cli.supervisor import Supervisor
from puras_cli.up import stop_all, stop_grace, wait_ready
from puras_common.access import SERVICES
from puras_common.bus import connect_nats
from puras_common.consumers import provision_bus

from puras_testing import Infra


def project_zip(files: Mapping[str, str | bytes], *, root: str = "") -> bytes:
    """A bundle from ``{"skills/echo/skill.yaml": "...", ...}``; text is dedented."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            data = content if isinstance(content, bytes) else textwrap.dedent(content).lstrip("\n")
            archive.writestr(root + name, data)
    return buffer.getvalue()


ECHO_PROJECT: dict[str, str] = {
    "skills/echo/skill.yaml": """
        description: Echo the input back unchanged.
        entrypoint: main.py:run
        input_schema:
          type: object
          properties: {text: {type: string}}
          required: [text]
        output_schema:
          type: object
          properties: {echoed: {type: string}}
          required: [echoed]
        """,
    "skills/echo/main.py": """
        def run(inputs: dict) -> dict:
            return {"echoed": inputs["text"]}
        """,
}


CHATTY_PROJECT: dict[str, str] = {
    "skills/chatty/skill.yaml": "entrypoint: main.py:run\n",
    "skills/chatty/main.py": """
        import time

        def run(inputs):
            for i in range(inputs["lines"]):
                print(f"line {i}", flush=True)
                time.sleep(inputs.get("pause", 0.02))
            return {"lines": inputs["lines"]}
        """,
    "skills/boom/skill.yaml": "entrypoint: main.py:run\n",
    "skills/boom/main.py": "def run(inputs):\n    raise KeyError('missing')\n",
}
"""``chatty`` logs ``lines`` lines, ``pause`` seconds apart; ``boom`` fails with a KeyError."""


@dataclass
class Tenant:
    """A workspace of the test platform and an HTTP client holding its API key."""

    slug: str
    id: str
    api_key: str
    http: httpx.AsyncClient

    async def push(
        self, files: Mapping[str, str | bytes] | Path | bytes, **form: str
    ) -> httpx.Response:
        if isinstance(files, Path):
            bundle = zip_project(files)
        elif isinstance(files, bytes):
            bundle = files
        else:
            bundle = project_zip(files)
        return await self.http.post(
            "/v1/deployments",
            files={"bundle": ("bundle.zip", bundle, "application/zip")},
            data=form,
        )

    async def run(
        self, skill: str, inputs: dict[str, Any], *, timeout: int = 30, **body: Any
    ) -> dict[str, Any]:
        """Submit with ``wait=true`` and return the job object."""
        response = await self.http.post(
            f"/v1/jobs?wait=true&timeout={timeout}",
            json={"skill": skill, "inputs": inputs, **body},
            timeout=timeout + 10,
        )
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job


@dataclass
class Person:
    """Someone signed in to the console: a client holding the session cookie, sending the CSRF
    token the sign-in answered with, acting in ``workspace`` unless a request names another."""

    email: str
    password: str
    csrf: str
    http: httpx.AsyncClient
    workspaces: list[dict[str, Any]]


@dataclass
class Platform:
    infra: Infra
    config: PlatformConfig
    supervisor: Supervisor
    log_dir: Path
    _log_files: dict[str, Any] = field(default_factory=dict)
    tenants: list[Tenant] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.config.gateway_url

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.credentials.admin_token}"}

    async def tenant(self, slug: str, *, credit_usd: str | None = "10") -> Tenant:
        """A new workspace (and its first key), with credit."""
        body: dict[str, Any] = {"slug": slug}
        if credit_usd is not None:
            body["credit_usd"] = credit_usd
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.post(
                "/v1/admin/workspaces", json=body, headers=self.admin_headers()
            )
        assert response.status_code == 201, response.text
        created = response.json()
        client = httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {created['api_key']}"}, timeout=60
        )
        tenant = Tenant(slug, created["workspace"]["id"], created["api_key"], client)
        self.tenants.append(tenant)
        return tenant

    async def add_user(
        self, workspace: str, email: str, *, role: str = "owner", password: str = "a long password"
    ) -> dict[str, Any]:
        """A console user, member of ``workspace`` with ``role`` (created by the operator)."""
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.post(
                f"/v1/admin/workspaces/{workspace}/users",
                json={"email": email, "role": role, "password": password},
                headers=self.admin_headers(),
            )
        assert response.status_code in (200, 201), response.text
        user: dict[str, Any] = response.json()
        return user

    async def sign_in(self, email: str, password: str = "a long password") -> Person:
        """Sign in as the console does; the client sends the cookie and the CSRF token."""
        http = httpx.AsyncClient(base_url=self.url, timeout=60)
        response = await http.post("/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        body = response.json()
        http.headers["X-CSRF-Token"] = body["csrf_token"]
        workspaces = body["workspaces"]
        if workspaces:
            slug = workspaces[0]["slug"]

            async def in_workspace(request: httpx.Request) -> None:
                if "workspace" not in request.url.params:
                    request.url = request.url.copy_merge_params({"workspace": slug})

            http.event_hooks["request"].append(in_workspace)
        person = Person(email, password, body["csrf_token"], http, workspaces)
        self.people.append(person)
        return person

    async def restart(self, *services: str) -> None:
        """Stop services cleanly, all at once, and start them again (waits until every one is
        healthy)."""
        await asyncio.gather(*(self.stop_service(s) for s in services))
        await self.start_service(*services)

    async def stop_service(self, service: str, *, kill: bool = False) -> None:
        """Stop one service (SIGKILL with ``kill``, as a crash would) until started again."""
        await self.supervisor.pause(
            service, sig=signal.SIGKILL if kill else signal.SIGTERM, grace=stop_grace()
        )

    async def start_service(self, *services: str) -> None:
        """Start stopped services again (waits until every one is healthy)."""
        for service in services:
            await self.supervisor.resume(service)
        await wait_ready(self.config)

    async def add_replica(
        self, service: str, name: str, *, env: dict[str, str] | None = None
    ) -> None:
        """Start another process of ``service`` (named ``name``, its environment changed by
        ``env``) and wait until it is healthy."""
        self.supervisor.add(
            name,
            [sys.executable, "-m", MODULES[service]],
            {**self.config.env_for(service, name=name), **(env or {})},
        )
        self._log_files[name] = open(self.log_dir / f"{name}.log", "a")
        self.supervisor.start(name)
        await wait_ready(self.config)

    def pid(self, name: str) -> int:
        pid = self.supervisor.pid(name)
        assert pid is not None, f"{name} is not running"
        return pid

    def logs(self, service: str) -> str:
        path = self.log_dir / f"{service}.log"
        return path.read_text() if path.exists() else ""


@contextlib.asynccontextmanager
async def start_platform(
    infra: Infra, *, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Platform]:
    """Every service, started from ``python -m``, stopped at exit; logs under the infra root."""
    home = infra.root / "home"
    home.mkdir(exist_ok=True)
    home.chmod(0o711)
    config = PlatformConfig(
        home=home,
        credentials=infra.credentials,
        nats_urls={name: infra.nats_url(name) for name in (*SERVICES, "admin")},
        database_urls=dict(infra.service_dsns),
        ports={
            "gateway": free_port(),
            "deployments": free_port(),
            "drive": free_port(),
            **{f"ops-{service}": free_port() for service in SERVICES},
        },
        extra_env={"PURAS_LOG_LEVEL": "INFO", **(extra_env or {})},
    )
    log_dir = infra.root / "logs"
    log_dir.mkdir(exist_ok=True)
    files = {service: open(log_dir / f"{service}.log", "a") for service in SERVICES}

    def write(service: str, line: bytes) -> None:
        files[service].write(line.decode("utf-8", errors="replace"))
        files[service].flush()

    # The consumers as this platform's settings define them (the function runner's lease).
    nc = await connect_nats(infra.nats_url(), name="test-provision")
    try:
        await provision_bus(nc.jetstream(), env={**os.environ, **config.extra_env})
    finally:
        await nc.close()
    supervisor = Supervisor(out=open("/dev/null", "w"), color=False, on_line=write)
    for service in START_ORDER:
        supervisor.add(service, [sys.executable, "-m", MODULES[service]], config.env_for(service))
    await supervisor.start_all()
    platform = Platform(infra, config, supervisor, log_dir, _log_files=files)
    try:
        await wait_ready(config, timeout=90)
        yield platform
    finally:
        for tenant in platform.tenants:
            await tenant.http.aclose()
        for person in platform.people:
            await person.http.aclose()
        await stop_all(supervisor, grace=10.0, home=config.home)
        for f in files.values():
            f.close()
