"""Gateway settings (``PURAS_GATEWAY_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from puras_common.settings import DEVELOPMENT_SECRET
from puras_media.settings import MediaSettings
from puras_pricing import DEFAULT_MARGIN_PCT
from pydantic import Field, SecretStr


class GatewaySettings(MediaSettings):
    service: ClassVar[str] = "gateway"
    secret_fields: ClassVar[tuple[str, ...]] = (
        "internal_token",
        "admin_token",
        "job_token_key",
        "session_key",
    )

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
    cors_origins: str = "*"
    """Origins whose pages may call the API, comma-separated; ``*`` (the default) for any, empty
    for none. Any is safe by default: answers to other origins never carry credentials, so a page
    can only use a key it already holds; the console's session cookie is SameSite=Strict, and a
    request it signs that changes anything needs the CSRF token (:mod:`puras_gateway.sessions`)."""
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
    subagent_max_descendants: int = Field(default=500, ge=1)
    """How many subagents one tree may hold in all, under the job an app submitted: the depth
    and per-job bounds alone admit 32^5 jobs from one submit."""
    rate_limit_burst: int = Field(default=300, ge=1)
    """Requests one key (or person signed in) may make at once: its token bucket's size."""
    rate_limit_per_second: float = Field(default=50.0, gt=0)
    """How fast the bucket refills: the sustained requests per second of one key."""
    max_streams_per_key: int = Field(default=100, ge=1)
    """Event streams (SSE) one key may hold open at once."""
    max_schedules_per_workspace: int = Field(default=100, ge=1)
    """Schedules a workspace may make through the API (those in skill.yaml are bounded per skill)."""
    session_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    """``PURAS_SESSION_KEY``: signs the session tokens (JWT, HS256) of people signed in."""
    session_token_seconds: int = Field(default=1800, ge=30, le=86400)
    """How long one session token lives; the console renews it while its page is open."""
    session_max_seconds: int = Field(default=12 * 3600, ge=60)
    """How long a session lasts from sign-in, however often its token is renewed."""
    login_failures_per_email: int = Field(default=5, ge=1)
    """Failed sign-ins for one email within ``login_failure_window_seconds`` before 429."""
    login_failures_per_ip: int = Field(default=30, ge=1)
    """Failed sign-ins from one address within the window before 429."""
    login_failure_window_seconds: int = Field(default=900, ge=1)
    invitation_seconds: int = Field(default=7 * 86400, ge=60)
    """How long an invitation link may be accepted."""

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """``cors_origins`` as a list."""
        return tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
