"""Agent runner settings (``PURAS_AGENT_RUNNER_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from puras_common.settings import DEVELOPMENT_SECRET
from puras_jobhost.settings import JobHostSettings
from puras_media.settings import MediaSettings
from pydantic import SecretStr


class AgentRunnerSettings(MediaSettings, JobHostSettings):
    service: ClassVar[str] = "agent-runner"
    secret_fields: ClassVar[tuple[str, ...]] = ("internal_token", "job_token_key")

    concurrency: int = 64
    """Agent jobs this process runs at once (they mostly wait on providers)."""
    child_concurrency: int = 256
    """Subagent jobs (``run.agent.child``) this process runs at once, on top of ``concurrency``:
    their own pool, so a child never waits behind parents waiting for it."""
    cache_dir: Path = Path(".puras/agent-runner")
    """Prepared deployments, venvs and job workdirs."""
    deployments_url: str = "http://127.0.0.1:8081"
    drive_url: str = "http://127.0.0.1:8082"
    """The drive's internal listener: jobs' ``./drive``, origins, signed links."""
    api_base: str = "http://127.0.0.1:8080"
    """Given to bash and tools as PURAS_API_BASE, for the in-skill SDK."""
    public_url: str | None = None
    """Set when the platform is reachable from outside: drive files then go to providers as
    signed URLs rather than inline."""
    job_token_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    inline_payload_bytes: int = 256 * 1024
    job_python: str | None = None
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    """bash and tools run in bubblewrap when it is available (``auto``; in production, refuse
    to start without it), always (``bwrap``) or never (``none``, said explicitly).
    ``PURAS_SANDBOX`` sets it for both runners."""
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534
    max_warm_deployments: int = 32
    memory_limit_bytes: int = 2 * 1024 * 1024 * 1024
    max_open_files: int = 1024
    max_processes: int = 256
    max_file_bytes: int = 1024 * 1024 * 1024

    # The loop
    max_steps: int = 50
    """Model calls per attempt before the job fails."""
    max_output_tokens: int = 8192
    """``max_tokens`` of each model call."""
    hold_min_output_tokens: int = 1024
    """A call runs only if its input and at least this many output tokens can be held; with
    less budget left than ``max_output_tokens`` pays for, the call asks for fewer tokens."""

    # Providers: keys and base URLs of the hosted families (None: the SDK's default URL)
    anthropic_api_key: SecretStr = SecretStr("")
    anthropic_base_url: str | None = None
    openai_api_key: SecretStr = SecretStr("")
    openai_base_url: str | None = None
    gemini_api_key: SecretStr = SecretStr("")
    gemini_base_url: str = "https://generativelanguage.googleapis.com/v1beta/openai/"
    local_api_key: SecretStr = SecretStr("")
    """Sent to operator-hosted ``local/<name>`` endpoints (see PURAS_LOCAL_MODELS)."""
    provider_timeout_seconds: float = 600.0
    provider_attempts: int = 5
    """Calls per model step when the provider fails transiently (429, 5xx, timeouts)."""
    provider_backoff_seconds: float = 1.0
    provider_backoff_cap_seconds: float = 30.0

    # Web tools
    search_provider: str = "brave"
    """The search API ``web_search`` and ``image_search`` use: ``brave``."""
    search_api_key: SecretStr = SecretStr("")
    search_base_url: str = "https://api.search.brave.com/res/v1"
    fetch_timeout_seconds: float = 60.0
    """web_fetch, download_url and attachment URLs; the networks they may reach despite the SSRF
    guard are ``PURAS_SSRF_ALLOW`` (:class:`MediaSettings.ssrf_allow`)."""
