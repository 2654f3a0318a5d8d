"""Deployments settings (``PURAS_DEPLOYMENTS_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from puras_common.settings import DEVELOPMENT_SECRET
from puras_jobhost.egress import EgressSettings
from pydantic import SecretStr


class DeploymentsSettings(EgressSettings):
    service: ClassVar[str] = "deployments"
    secret_fields: ClassVar[tuple[str, ...]] = ("internal_token", "job_token_key", "secrets_key")

    host: str = "127.0.0.1"
    port: int = 8081
    data_dir: Path = Path(".puras/deployments")
    """Where bundles and wheelhouses are kept (content-addressed by sha256)."""
    store: Literal["local", "s3"] = "local"
    """``s3``: bundles and wheelhouses also live in an S3-compatible bucket that every replica
    shares; ``data_dir`` is then each replica's copy."""
    s3_bucket: str = "puras-deployments"
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    max_bundle_bytes: int = 100 * 1024 * 1024
    max_entries: int = 10_000
    max_uncompressed_bytes: int = 512 * 1024 * 1024
    max_ratio: int = 200

    job_token_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    """Verifies the job tokens runners present when they ask for a job's secrets."""
    secrets_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    """The master key (64 hex characters) that wraps every workspace's data key."""
    secrets_previous_keys: tuple[SecretStr, ...] = ()
    """Earlier master keys: data keys still wrapped by one are re-wrapped at start."""

    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    """Builds run in bubblewrap when it is available (``auto``; in production, refuse to start
    without it), always (``bwrap``: refuse to start without it) or never (``none``, said
    explicitly). ``PURAS_SANDBOX`` sets it for the runners and builds at once."""
    sandbox_uid: int = 65534
    """The unprivileged uid builds run as when this service is root."""
    sandbox_gid: int = 65534
    build_python: str | None = None
    """The interpreter venvs are built for; by default the one jobs run on (same as the runner's)."""
    build_concurrency: int = 2
    build_timeout_seconds: int = 900
    build_lease_seconds: int = 60
    """A build whose builder stops renewing this lease (it died) is taken over by another."""
    build_memory_bytes: int = 4 * 1024 * 1024 * 1024
    build_max_log_bytes: int = 64 * 1024
    max_wheelhouse_bytes: int = 1024 * 1024 * 1024
