"""Per-caller quotas of the public API: a request rate (a token bucket) and a number of open
event streams. Both are counted in this gateway process: with N replicas behind a balancer a
caller may reach N times the rate, which bounds it all the same (docs/decisions.md).

Answers follow the IETF RateLimit header fields: every request a key makes carries
``RateLimit-Policy: "burst";q=<burst>;w=<seconds to refill>`` and
``RateLimit: "burst";r=<requests left>;t=<seconds until full>``; a request past the limit is
429 ``rate_limited`` with ``Retry-After``, the seconds until one request is allowed again.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from puras_common.api import ApiError, ErrorCode

STATE_KEY: Final = "puras_ratelimit"
"""Where a request's rate decision waits in the ASGI scope's state for :class:`RateLimitHeaders`."""
MAX_TRACKED: Final = 100_000
"""Buckets kept at most; the least recently used is forgotten (a forgotten caller starts full)."""


@dataclass(frozen=True)
class Decision:
    """One request's outcome against its caller's bucket."""

    allowed: bool
    remaining: int
    retry_after: int
    """Whole seconds until one request is allowed (0 when allowed)."""
    full_in: int
    """Whole seconds until the bucket is full again."""
    burst: int
    window: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Policy": f'"burst";q={self.burst};w={self.window}',
            "RateLimit": f'"burst";r={self.remaining};t={self.full_in}',
        }


class RateLimiter:
    """Token buckets, one per caller: ``burst`` requests at once, refilled at ``per_second``."""

    def __init__(
        self, *, burst: int, per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.window = max(1, math.ceil(burst / per_second))
        self._clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def take(self, caller: Hashable) -> Decision:
        """Spend one request of ``caller``'s bucket, if it holds one."""
        now = self._clock()
        tokens, at = self._buckets.pop(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_second)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[caller] = (tokens, now)
        if len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return Decision(
            allowed=allowed,
            remaining=int(tokens),
            retry_after=0 if allowed else max(1, math.ceil((1.0 - tokens) / self.per_second)),
            full_in=math.ceil((self.burst - tokens) / self.per_second),
            burst=self.burst,
            window=self.window,
        )


class RateLimited(ApiError):
    """429: the caller's request rate is past its limit."""

    def __init__(self, decision: Decision, *, caller: str = "this key") -> None:
        super().__init__(
            ErrorCode.RATE_LIMITED,
            f"too many requests: {caller} may make {decision.burst} requests at once, refilled "
            f"over {decision.window} s (PURAS_GATEWAY_RATE_LIMIT_BURST, "
            f"PURAS_GATEWAY_RATE_LIMIT_PER_SECOND); try again in {decision.retry_after} s",
            details={"quota": "requests", "retry_after": decision.retry_after},
            headers={"Retry-After": str(decision.retry_after), **decision.headers()},
        )


class StreamSlots:
    """Open event streams per caller, at most ``limit`` at a time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[Hashable, int] = {}

    def acquire(self, caller: Hashable) -> Slot:
        """A slot for one more stream; 429 when ``caller`` holds ``limit`` already."""
        held = self._open.get(caller, 0)
        if held >= self.limit:
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"this key has {held} event streams open; the limit is {self.limit} "
                "(PURAS_GATEWAY_MAX_STREAMS_PER_KEY): close one, or poll GET /v1/jobs/{id}/events",
                details={"quota": "streams", "open": held, "limit": self.limit},
                headers={"Retry-After": "1"},
            )
        self._open[caller] = held + 1
        return Slot(self, caller)

    def held(self, caller: Hashable) -> int:
        return self._open.get(caller, 0)

    def _release(self, caller: Hashable) -> None:
        left = self._open.get(caller, 0) - 1
        if left > 0:
            self._open[caller] = left
        else:
            self._open.pop(caller, None)


class Slot:
    """One open stream's place; released once, however the stream ends."""

    def __init__(self, slots: StreamSlots, caller: Hashable) -> None:
        self._slots, self._caller, self._held = slots, caller, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self._caller)

    def __del__(self) -> None:
        # A stream whose response was dropped before it began never runs its own release.
        self.release()


class RateLimitHeaders:
    """ASGI middleware: the RateLimit fields of the request's decision on its answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Mapping[str, Any]) -> None:
            decision = scope.get("state", {}).get(STATE_KEY)
            if message["type"] == "http.response.start" and isinstance(decision, Decision):
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [
                    (name.lower().encode(), value.encode())
                    for name, value in decision.headers().items()
                    if name.lower().encode() not in present
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)
