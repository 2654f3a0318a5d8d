"""Gateway settings (``PURAS_GATEWAY_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from puras_common.pricing import DEFAULT_MARGIN_PCT
from puras_common.settings import DEVELOPMENT_SECRET
from puras_media.settings import MediaSettings
from pydantic import Field, SecretStr


class GatewaySettings(MediaSettings):
    service: ClassVar[str] = "gateway"
    secret_fields: ClassVar[tuple[str, ...]] = ("internal_token", "admin_token", "job_token_key")

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    """Where clients reach the gateway; defaults to http://host:port."""
    admin_token: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    job_token_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    deployments_url: str = "http://127.0.0.1:8081"
    drive_url: str = "http://127.0.0.1:8082"
    max_request_bytes: int = 1024 * 1024
    """Largest ``POST /v1/jobs`` body; files go through the drive instead."""
    inline_payload_bytes: int = 256 * 1024
    """Inputs and results above this are stored as objects; events carry a reference."""
    max_bundle_bytes: int = 100 * 1024 * 1024
    max_upload_bytes: int = 50 * 1024 * 1024
    """One file through ``POST /v1/drive/upload``; the drive enforces the same number exactly."""
    cors_origins: tuple[str, ...] = ()
    deployment_visible_timeout: float = 30.0
    sse_ping_seconds: float = 15.0
    """A ``: ping`` comment on quiet event streams, for proxies and idle clients."""
    margin_pct: Decimal = Field(default=DEFAULT_MARGIN_PCT, ge=0)
    """``PURAS_MARGIN_PCT``, as billing reads it: the prices ``GET /v1/pricing`` shows."""
    build_wait_seconds: float = 20.0
    """How long a push whose requirements.txt builds waits for the build before answering 202."""
    subagent_max_depth: int = Field(default=5, ge=1)
    """How deep a tree of subagents may grow: a job submitted by a job is at depth 1, its own
    child at depth 2 …; a submit past this depth is refused."""
    subagent_max_children: int = Field(default=32, ge=1)
    """How many subagents one job may start in its life."""

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
