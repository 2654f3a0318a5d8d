"""Failed sign-ins, counted per email and per client address over a sliding window: past either
limit, sign-ins for that bucket answer 429 with ``Retry-After`` until the oldest failure in the
window ages out. Counted in the gateway's database, so every replica sees the same numbers.

A correct password does not get past the limit either (the count is checked first), so a
guessing run cannot learn anything from the answers while it is limited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from puras_common.api import ApiError, ErrorCode


@dataclass(frozen=True)
class Limits:
    per_email: int
    per_ip: int
    window_seconds: int


def buckets(email: str, ip: str) -> tuple[str, str]:
    return f"email:{email}", f"ip:{ip}"


class TooManyFailures(ApiError):
    """429: too many failed sign-ins for one email or from one address."""

    def __init__(self, *, what: str, failures: int, window: int, retry_after: int) -> None:
        super().__init__(
            ErrorCode.RATE_LIMITED,
            f"{failures} failed sign-ins for {what} in the last {window} s; "
            f"try again in {retry_after} s",
            details={"failures": failures, "window_seconds": window, "retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


async def check(
    conn: asyncpg.Pool | asyncpg.Connection, *, email: str, ip: str, limits: Limits
) -> None:
    """429 when either bucket is at its limit."""
    since = datetime.now(UTC) - timedelta(seconds=limits.window_seconds)
    by_email, by_ip = buckets(email, ip)
    rows = await conn.fetch(
        """SELECT bucket, count(*) AS n, min(at) AS oldest FROM login_failures
           WHERE bucket = ANY($1::text[]) AND at > $2 GROUP BY bucket""",
        [by_email, by_ip],
        since,
    )
    for row in rows:
        limit, what = (
            (limits.per_email, "this email")
            if row["bucket"] == by_email
            else (limits.per_ip, "this address")
        )
        if row["n"] >= limit:
            ages_out = row["oldest"] + timedelta(seconds=limits.window_seconds)
            wait = max(1, math.ceil((ages_out - datetime.now(UTC)).total_seconds()))
            raise TooManyFailures(
                what=what, failures=row["n"], window=limits.window_seconds, retry_after=wait
            )


async def failed(
    conn: asyncpg.Pool | asyncpg.Connection, *, email: str, ip: str, limits: Limits
) -> None:
    """Count one failure in both buckets, and forget failures older than the window."""
    await conn.execute(
        """WITH gone AS (DELETE FROM login_failures WHERE at < now() - make_interval(secs => $2))
           INSERT INTO login_failures (bucket) SELECT unnest($1::text[])""",
        list(buckets(email, ip)),
        limits.window_seconds,
    )


async def succeeded(conn: asyncpg.Pool | asyncpg.Connection, *, email: str) -> None:
    """A correct password clears the email's failures (not the address's)."""
    await conn.execute("DELETE FROM login_failures WHERE bucket = $1", buckets(email, "")[0])
