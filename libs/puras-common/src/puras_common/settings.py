"""Settings, read from ``PURAS_*`` environment variables.

Each service subclasses :class:`ServiceSettings`, names itself in ``service`` and builds its
settings once in ``__main__`` with :meth:`ServiceSettings.load`. Any field can be set for all
services (``PURAS_NATS_URL``) or for one (``PURAS_GATEWAY_NATS_URL``), the latter winning, so
one environment file can give each service its own credentials.
"""

from __future__ import annotations

import os
import socket
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET = "puras-development-only-secret"


class InsecureSettingsError(ValueError):
    """A production process was started with a development default for a secret."""


class ServiceSettings(BaseSettings):
    """What every service process reads."""

    model_config = SettingsConfigDict(env_prefix="PURAS_", extra="ignore", frozen=True)

    service: ClassVar[str] = "puras"
    secret_fields: ClassVar[tuple[str, ...]] = ()
    """The secret settings this service uses (as ``puras_common.access.SERVICE_SECRETS`` gives
    them): production refuses to start while any is unset or the development default."""

    environment: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    instance_id: str = f"{socket.gethostname()}-{os.getpid()}"

    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str | None = None
    stream_replicas: int = 1
    jobs_stream_max_age_days: float = Field(default=30.0, gt=0)
    """How long the JOBS stream keeps a job's events (the gateway's read model keeps them
    for the API regardless)."""
    jobs_stream_max_bytes: int = Field(default=8 * 1024**3, ge=-1)
    """The JOBS stream's size; past it the oldest events are discarded (-1: no limit)."""
    jobs_stream_max_msgs: int = Field(default=-1, ge=-1)
    """The JOBS stream's message count; past it the oldest are discarded (-1: no limit)."""
    drain_seconds: float = 30.0
    ops_host: str = "127.0.0.1"
    ops_port: int | None = None
    """The ops listener (``/metrics``, ``/livez``, ``/readyz``); 0 picks a free port, unset
    serves none."""
    """On SIGTERM, how long runners may finish the jobs they hold before the process exits."""
    compute_micros_per_cpu_second: int = Field(default=0, ge=0)
    compute_micros_per_wall_second: int = Field(default=0, ge=0)
    """The operator's price of a job's compute (``PURAS_COMPUTE_MICROS_PER_*``, whole micros, no
    margin). Every service reads them, so the price a runner shows is the one billing charges."""
    internal_token: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    """Shared by the platform's services for their internal HTTP listeners; never given to jobs."""

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Settings from the environment, with ``PURAS_<SERVICE>_<FIELD>`` beating ``PURAS_<FIELD>``."""
        prefix = f"PURAS_{cls.service.upper().replace('-', '_')}_"
        specific = {
            name: os.environ[prefix + name.upper()]
            for name in cls.model_fields
            if prefix + name.upper() in os.environ
        }
        return cls(**{**specific, **overrides})

    @model_validator(mode="after")
    def _refuse_insecure_defaults(self) -> Self:
        if self.environment != "production":
            return self
        weak = [
            name
            for name in self.secret_fields
            if isinstance(value := getattr(self, name), SecretStr)
            and value.get_secret_value() in ("", DEVELOPMENT_SECRET)
        ]
        if weak:
            names = ", ".join(f"PURAS_{n.upper()}" for n in weak)
            raise InsecureSettingsError(f"production refuses development defaults: set {names}")
        return self

    def require_database_url(self) -> str:
        """The database URL, or a clear error naming the variables that set it."""
        if not self.database_url:
            svc = self.service.upper().replace("-", "_")
            raise ValueError(f"no database: set PURAS_DATABASE_URL or PURAS_{svc}_DATABASE_URL")
        return self.database_url
