"""Deployments settings (``PURAS_DEPLOYMENTS_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from puras_common.settings import ServiceSettings


class DeploymentsSettings(ServiceSettings):
    service: ClassVar[str] = "deployments"

    host: str = "127.0.0.1"
    port: int = 8081
    data_dir: Path = Path(".puras/deployments")
    """Where bundles are kept (content-addressed by sha256)."""
    max_bundle_bytes: int = 100 * 1024 * 1024
    max_entries: int = 10_000
    max_uncompressed_bytes: int = 512 * 1024 * 1024
    max_ratio: int = 200
