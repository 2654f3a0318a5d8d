"""Everything needed to start the services: where the bus and database are, each service's
credentials, ports and directories, turned into each process's environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from puras_common.access import SERVICES, Credentials, operator_secrets

MODULES: Final = {service: "puras_" + service.replace("-", "_") for service in SERVICES}
"""``python -m <module>`` for each service."""

START_ORDER: Final = (
    "drive",
    "deployments",
    "billing",
    "scheduler",
    "function-runner",
    "agent-runner",
    "webhooks",
    "gateway",
)


def runner_caches(home: Path) -> tuple[Path, Path]:
    """The function runner's and the agent runner's cache folders under the state folder
    ``home``; their jobs' work folders are in ``work/`` inside each."""
    return home / "runner", home / "agent-runner"


@dataclass
class PlatformConfig:
    home: Path
    """State directory (``.puras/``)."""
    credentials: Credentials
    nats_urls: dict[str, str]
    """Per service (and ``admin``)."""
    database_urls: dict[str, str]
    """Per stateful service."""
    ports: dict[str, int]
    """``gateway``, ``deployments``, ``drive``, and ``ops-<service>`` for each ops listener."""
    public_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def ops_url(self, name: str) -> str | None:
        """Where the process ``name`` (a service, or a replica's name) serves ``/metrics``."""
        port = self.ports.get(f"ops-{name}")
        return f"http://127.0.0.1:{port}" if port else None

    def env_for(self, service: str, *, name: str | None = None) -> dict[str, str]:
        """The environment of ``service``'s process ``name`` (default: the service's own)."""
        c = self.credentials
        function_cache, agent_cache = runner_caches(self.home)
        env = {
            "PURAS_NATS_URL": self.nats_urls.get(service, self.nats_urls.get("admin", "")),
            **operator_secrets(service, os.environ),
            **c.secrets_env(service),
            "PURAS_LOG_FORMAT": "json",
            "PURAS_GATEWAY_PORT": str(self.ports["gateway"]),
            "PURAS_DEPLOYMENTS_PORT": str(self.ports["deployments"]),
            "PURAS_DRIVE_PORT": str(self.ports["drive"]),
            "PURAS_DEPLOYMENTS_URL": f"http://127.0.0.1:{self.ports['deployments']}",
            "PURAS_DRIVE_URL": f"http://127.0.0.1:{self.ports['drive']}",
            "PURAS_API_BASE": self.gateway_url,
            "PURAS_DEPLOYMENTS_DATA_DIR": str(self.home / "deployments"),
            "PURAS_DRIVE_DATA_DIR": str(self.home / "drive"),
            "PURAS_FUNCTION_RUNNER_CACHE_DIR": str(function_cache),
            "PURAS_AGENT_RUNNER_CACHE_DIR": str(agent_cache),
            # A replica without a port of its own picks a free one (it reports it in health).
            "PURAS_OPS_PORT": str(self.ports.get(f"ops-{name or service}", 0)),
        }
        if self.public_url:
            env["PURAS_PUBLIC_URL"] = self.public_url
        if service in self.database_urls:
            env["PURAS_DATABASE_URL"] = self.database_urls[service]
        env.update(self.extra_env)
        return env
