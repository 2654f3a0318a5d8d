"""Drive settings (``PURAS_DRIVE_*`` beats ``PURAS_*``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from puras_common.settings import DEVELOPMENT_SECRET, ServiceSettings
from pydantic import Field, SecretStr


class DriveSettings(ServiceSettings):
    service: ClassVar[str] = "drive"
    secret_fields: ClassVar[tuple[str, ...]] = ("internal_token", "signing_key")

    host: str = "127.0.0.1"
    port: int = 8082
    backend: Literal["local", "s3"] = "local"
    """Where bytes live: ``local`` (files under ``data_dir``) or ``s3``."""
    data_dir: Path = Path(".puras/drive")
    """The local backend's root (workspaces' files and payload objects); spool space with S3."""
    s3_endpoint: str | None = None
    """An S3-protocol endpoint (MinIO); unset means AWS S3 itself."""
    s3_bucket: str = "puras"
    s3_region: str = "us-east-1"
    signing_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    """Signs drive links; rotate it to revoke every signed and shared link at once."""
    signing_keys_retired: SecretStr = SecretStr("")
    """Earlier keys whose links still verify (comma-separated), for a rotation that keeps them."""
    public_url: str | None = None
    """Where clients reach the gateway, the base of signed links (``PURAS_PUBLIC_URL``)."""
    api_base: str = "http://127.0.0.1:8080"
    """The gateway's URL when no public URL is set (``PURAS_API_BASE``)."""
    links_url: str | None = None
    """A separate origin for signed and shared links (``https://files.example.com``), routed to
    the gateway's ``/v1/drive/files/`` only, so a served file never shares the API's origin;
    unset, links use the public URL."""
    max_upload_bytes: int = 50 * 1024 * 1024
    """One file through ``/v1/drive/upload`` (50 MB = 52,428,800 bytes)."""
    max_write_bytes: int = 1024 * 1024 * 1024
    """One file written by the platform for a job (downloads, media, a job's S3 write-back)."""
    max_payload_bytes: int = 64 * 1024 * 1024
    quota_bytes: int = Field(default=10 * 1024**3, ge=0)
    """What one workspace's drive may hold (10 GiB): uploads and the platform's writes past it
    answer 507 ``quota_exceeded``."""
    files_uid: int | None = None
    """One owner for every workspace's files on the local backend, and the uid every job runs
    as. Unset (the default), a drive running as root gives each workspace a uid of its own."""
    files_gid: int | None = None
    sandbox_uid_base: int = 2_000_000
    """The first of the uids workspaces get (``PURAS_SANDBOX_UID_BASE``): pick a range no
    account or subordinate-id range (``/etc/subuid``) of the host uses."""
    sandbox_uid_count: int = 1_000_000
    """How many (``PURAS_SANDBOX_UID_COUNT``): at most this many workspaces, ever."""

    def retired_keys(self) -> list[str]:
        return [
            k.strip() for k in self.signing_keys_retired.get_secret_value().split(",") if k.strip()
        ]

    @property
    def links_base(self) -> str:
        return (self.links_url or self.public_url or self.api_base).rstrip("/")

    def file_owner(self) -> tuple[int, int] | None:
        """The one owner of every workspace's files, when the operator set one."""
        if self.files_uid is not None:
            return self.files_uid, self.files_gid if self.files_gid is not None else self.files_uid
        return None

    @property
    def uid_per_workspace(self) -> bool:
        """Each workspace's folder is owned by its own uid: as root, with no single owner set."""
        return self.files_uid is None and os.geteuid() == 0
