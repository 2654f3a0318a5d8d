"""What request handlers share within one gateway process."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import httpx
from puras_common.outbox import Outbox
from puras_common.payloads import PayloadStore
from puras_common.service import ServiceRuntime
from puras_media import MediaService

from puras_gateway.catalog import ResolutionCache
from puras_gateway.live import LiveJobs
from puras_gateway.notify import Notifier
from puras_gateway.quotas import RateLimiter, StreamSlots
from puras_gateway.settings import GatewaySettings


@dataclass
class Gateway:
    settings: GatewaySettings
    runtime: ServiceRuntime
    notifier: Notifier
    http: httpx.AsyncClient
    payloads: PayloadStore
    live: LiveJobs
    skills: ResolutionCache = field(default_factory=ResolutionCache)
    media: MediaService | None = None
    """The media library, for ``/v1/media/*`` (built at start)."""
    rate: RateLimiter = field(init=False)
    """Requests per key (or person signed in), in this process."""
    streams: StreamSlots = field(init=False)
    """Open event streams per key, in this process."""

    def __post_init__(self) -> None:
        self.rate = RateLimiter(
            burst=self.settings.rate_limit_burst, per_second=self.settings.rate_limit_per_second
        )
        self.streams = StreamSlots(self.settings.max_streams_per_key)

    @property
    def db(self) -> asyncpg.Pool:
        return self.runtime.db

    @property
    def outbox(self) -> Outbox:
        assert self.runtime.outbox is not None
        return self.runtime.outbox

    @property
    def internal_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.internal_token.get_secret_value()}"}
