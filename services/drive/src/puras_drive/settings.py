"""Drive settings (``PURAS_DRIVE_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from puras_common.settings import ServiceSettings


class DriveSettings(ServiceSettings):
    service: ClassVar[str] = "drive"

    host: str = "127.0.0.1"
    port: int = 8082
    data_dir: Path = Path(".puras/drive")
    """The local backend's root: workspaces' files and the platform's payload objects."""
    max_payload_bytes: int = 64 * 1024 * 1024
