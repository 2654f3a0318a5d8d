"""Everything needed to start the services: where the bus and database are, each service's
credentials, ports and directories, turned into each process's environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from puras_common.access import SERVICES, Credentials

MODULES: Final = {service: "puras_" + service.replace("-", "_") for service in SERVICES}
"""``python -m <module>`` for each service."""

START_ORDER: Final = ("drive", "deployments", "billing", "scheduler", "function-runner", "agent-runner", "gateway")


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
    """``gateway``, ``deployments``, ``drive``."""
    public_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def env_for(self, service: str) -> dict[str, str]:
        c = self.credentials
        env = {
            "PURAS_NATS_URL": self.nats_urls.get(service, self.nats_urls.get("admin", "")),
            "PURAS_INTERNAL_TOKEN": c.internal_token,
            "PURAS_JOB_TOKEN_KEY": c.job_token_key,
            "PURAS_ADMIN_TOKEN": c.admin_token,
            "PURAS_SECRETS_KEY": c.secrets_key,
            "PURAS_DRIVE_SIGNING_KEY": c.drive_signing_key,
            "PURAS_LOG_FORMAT": "json",
            "PURAS_GATEWAY_PORT": str(self.ports["gateway"]),
            "PURAS_DEPLOYMENTS_PORT": str(self.ports["deployments"]),
            "PURAS_DRIVE_PORT": str(self.ports["drive"]),
            "PURAS_DEPLOYMENTS_URL": f"http://127.0.0.1:{self.ports['deployments']}",
            "PURAS_DRIVE_URL": f"http://127.0.0.1:{self.ports['drive']}",
            "PURAS_API_BASE": self.gateway_url,
            "PURAS_DEPLOYMENTS_DATA_DIR": str(self.home / "deployments"),
            "PURAS_DRIVE_DATA_DIR": str(self.home / "drive"),
            "PURAS_FUNCTION_RUNNER_CACHE_DIR": str(self.home / "runner"),
            "PURAS_AGENT_RUNNER_CACHE_DIR": str(self.home / "agent-runner"),
        }
        if self.public_url:
            env["PURAS_PUBLIC_URL"] = self.public_url
        if service in self.database_urls:
            env["PURAS_DATABASE_URL"] = self.database_urls[service]
        env.update(self.extra_env)
        return env
