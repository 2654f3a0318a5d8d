"""Retrying a failed deterministic job under its skill's ``retries:`` policy.

A failed attempt is run again while the policy's ``max_attempts`` (runs in all) allow it: the
job goes back to the queue, not before ``backoff_seconds × 2^(n−1)`` (n: the attempt that just
failed) with "equal jitter", a random half of that pause added to the other half, so jobs that
failed together do not all come back at the same moment. A ``job.retrying`` event names the new
attempt, why the last one failed and the pause.

Only what the job itself did is retried: an exception, a timeout, a result that broke the
output schema. Bad inputs would fail the same way again, and a job stopped for money or
cancelled must not run on. Outages of the platform never reach here: a runner cut off from
the bus keeps its job, and a redelivery waits for it (see :mod:`puras_scheduler.attempts`).
"""

from __future__ import annotations

import random
from typing import Any, Final

from puras_common.events.jobs import FailedPayload

RETRYABLE: Final = frozenset({"exception", "timeout", "invalid_result", "output_schema"})
MAX_PAUSE_SECONDS: Final = 3600.0


def pause_before(
    policy: dict[str, Any] | None,
    *,
    failed_attempt: int,
    failure: FailedPayload,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before the next attempt, or None when the job fails for good."""
    if policy is None or failure.reason not in RETRYABLE:
        return None
    if failed_attempt >= int(policy.get("max_attempts", 1)):
        return None
    base = float(policy.get("backoff_seconds", 1.0)) * 2.0 ** max(0, failed_attempt - 1)
    base = min(base, MAX_PAUSE_SECONDS)
    return base / 2 + (rng or random).uniform(0, base / 2)
