"""Function runner settings (``PURAS_FUNCTION_RUNNER_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from puras_common.settings import DEVELOPMENT_SECRET
from puras_jobhost.settings import JobHostSettings
from pydantic import Field, SecretStr


class FunctionRunnerSettings(JobHostSettings):
    service: ClassVar[str] = "function-runner"
    secret_fields: ClassVar[tuple[str, ...]] = ("internal_token", "job_token_key")

    concurrency: int = 32
    """Jobs this process runs at once."""
    child_concurrency: int = 256
    """Subagent jobs (``run.function.child``) this process runs at once, on top of
    ``concurrency``: their own pool, so a child never waits behind parents waiting for it."""
    cache_dir: Path = Path(".puras/runner")
    """Prepared deployments, venvs and job workdirs."""
    deployments_url: str = "http://127.0.0.1:8081"
    drive_url: str = "http://127.0.0.1:8082"
    api_base: str = "http://127.0.0.1:8080"
    """Given to jobs as PURAS_API_BASE, for the in-skill SDK."""
    job_token_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    inline_payload_bytes: int = 256 * 1024
    job_python: str | None = None
    """The interpreter jobs run on; by default this one, or a system one of the same version
    when the job uid cannot reach this one."""
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    """Jobs run in bubblewrap when it is available (``auto``; in production, refuse to start
    without it), always (``bwrap``: refuse to start without it) or never (``none``, said
    explicitly). ``PURAS_SANDBOX`` sets it for both runners."""
    sandbox_uid: int = 65534
    """The unprivileged uid jobs run as when the runner is root."""
    sandbox_gid: int = 65534
    lease_seconds: float = 30.0
    """A job's WORK message is redelivered to another runner if this one is silent this long
    (it heartbeats every third of it while the job runs)."""
    max_deliveries: int = 5
    max_log_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """What one attempt's output may put in its ``log`` events (UTF-8 bytes); past it, one
    marker event and the rest is dropped."""
    cancel_grace_seconds: float = 5.0
    """After SIGTERM, how long a cancelled job may take to exit before SIGKILL."""
    max_warm_deployments: int = 32
    """Warm fork servers kept; the least recently used is stopped beyond this."""
    warm_idle_seconds: float = 600.0
    """A warm fork server unused this long is stopped."""
    memory_limit_bytes: int = 2 * 1024 * 1024 * 1024
    max_open_files: int = 1024
    max_processes: int = 256
    max_file_bytes: int = 1024 * 1024 * 1024
    ssrf_allow: str = ""
    """Networks the SDK may fetch file inputs from despite the SSRF guard (``PURAS_SSRF_ALLOW``)."""
