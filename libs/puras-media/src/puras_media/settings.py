"""Settings of the processes that make media calls (the gateway and the agent runner): each
service's settings class derives from :class:`MediaSettings`, so ``PURAS_FAL_API_KEY`` and the
rest are read the same way everywhere (``PURAS_<SERVICE>_…`` still wins for one service)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from puras_common.settings import ServiceSettings
from puras_pricing import DEFAULT_MARGIN_PCT
from pydantic import Field, SecretStr


class MediaSettings(ServiceSettings):
    media_secret_fields: ClassVar[tuple[str, ...]] = ("fal_api_key", "elevenlabs_api_key")

    fal_api_key: SecretStr = SecretStr("")
    """``PURAS_FAL_API_KEY``: fal's key, sent as ``Authorization: Key …``."""
    fal_queue_url: str = "https://queue.fal.run"
    elevenlabs_api_key: SecretStr = SecretStr("")
    """``PURAS_ELEVENLABS_API_KEY``: sent as ``xi-api-key``."""
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    media_endpoints: str = ""
    """``PURAS_MEDIA_ENDPOINTS``: a JSON object of slug → fal model id, overriding the catalogue's."""
    media_timeout_seconds: float = 1200.0
    """How long one generation may take upstream before it is withdrawn (504 ``upstream_timeout``)."""
    media_poll_seconds: float = 0.5
    """First wait between status polls; it grows by half each poll up to ``media_poll_max_seconds``."""
    media_poll_max_seconds: float = 5.0
    media_max_output_bytes: int = 512 * 1024 * 1024
    """The largest output file the platform downloads into the drive."""
    margin_pct: Decimal = Field(default=DEFAULT_MARGIN_PCT, ge=0)
    """``PURAS_MARGIN_PCT``, as billing reads it: the ``billed_micros`` a call answers with."""
    ssrf_allow: str = ""
    """``PURAS_SSRF_ALLOW``: networks output downloads may reach despite the SSRF guard."""
