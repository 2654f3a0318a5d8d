"""Drive settings (``PURAS_DRIVE_*`` beats ``PURAS_*``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from puras_common.settings import DEVELOPMENT_SECRET, ServiceSettings
from pydantic import SecretStr


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
    max_upload_bytes: int = 50 * 1024 * 1024
    """One file through ``/v1/drive/upload`` (50 MB = 52,428,800 bytes)."""
    max_write_bytes: int = 1024 * 1024 * 1024
    """One file written by the platform for a job (downloads, media, a job's S3 write-back)."""
    max_payload_bytes: int = 64 * 1024 * 1024
    files_uid: int | None = None
    """Owner of workspace files on the local backend (jobs' uid); 65534 when running as root."""
    files_gid: int | None = None

    def retired_keys(self) -> list[str]:
        return [k.strip() for k in self.signing_keys_retired.get_secret_value().split(",") if k.strip()]

    @property
    def links_base(self) -> str:
        return (self.public_url or self.api_base).rstrip("/")

    def file_owner(self) -> tuple[int, int] | None:
        if self.files_uid is not None:
            return self.files_uid, self.files_gid if self.files_gid is not None else self.files_uid
        return (65534, 65534) if os.geteuid() == 0 else None
