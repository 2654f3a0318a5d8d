"""What a schedule's cron expression means: one definition for the gateway (which checks it and
shows the next fire times) and the scheduler (which fires it), so the two never disagree.

Expressions are croniter's: five fields (minute hour day month weekday), an optional sixth for
seconds (``* * * * * */15``: every 15 s), or an alias (``@hourly``, ``@daily`` …). They are
evaluated in an IANA time zone, so ``0 9 * * *`` in ``Europe/Berlin`` fires at 09:00 there,
through daylight-saving changes (a time that does not exist that day fires at the next one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Final, Literal
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadDateError, croniter

MAX_EXPRESSION_CHARS: Final = 120
MAX_FIRES_PER_TICK: Final = 1000
"""The most fire times one decision returns: enough for an every-second schedule to catch up
well past any grace period, and a bound on the work a tenant's expression can ask for."""

Missed = Literal["skip", "catch_up"]
_EPSILON: Final = timedelta(microseconds=1)


class CronError(ValueError):
    """An expression or time zone that cannot be a schedule; the message says which and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


@dataclass(frozen=True)
class Cron:
    """A checked expression in a checked time zone."""

    expression: str
    timezone: str

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Cron:
        """The schedule, or :class:`CronError` naming the field (``cron``, ``timezone``)."""
        expression = expression.strip()
        if not expression or len(expression) > MAX_EXPRESSION_CHARS:
            raise CronError(
                "cron",
                f"cron must be 1 to {MAX_EXPRESSION_CHARS} characters, not {len(expression)}",
            )
        if timezone != "UTC" and timezone not in _zones():
            raise CronError(
                "timezone", f"timezone {timezone[:80]!r} is not an IANA time zone (Europe/Berlin)"
            )
        if not croniter.is_valid(expression):
            raise CronError(
                "cron",
                f"cron {expression!r} is not a cron expression: use five fields (minute hour day "
                "month weekday), a sixth for seconds, or an alias such as @hourly",
            )
        cron = cls(expression, timezone)
        if cron.next_after(datetime.now(UTC)) is None:
            raise CronError("cron", f"cron {expression!r} never fires")
        return cron

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment`` (UTC), or None if there is none."""
        try:
            nxt = croniter(self.expression, moment.astimezone(self.zone)).get_next(datetime)
        except CroniterBadDateError:
            return None
        return nxt.astimezone(UTC)

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """The next ``count`` fire times after ``moment``, in UTC."""
        times: list[datetime] = []
        current: datetime | None = moment
        while len(times) < count and current is not None:
            current = self.next_after(current)
            if current is not None:
                times.append(current)
        return times

    def due(
        self,
        *,
        after: datetime,
        now: datetime,
        grace: timedelta,
        missed: Missed,
        catch_up_limit: int,
    ) -> list[datetime]:
        """The fire times in ``(after, now]`` to fire now, oldest first.

        Every time at most ``grace`` old is due (a fire a little late is still on time). Older
        ones were missed, while no scheduler ran: ``skip`` drops them, ``catch_up`` fires the
        newest ``catch_up_limit`` of them.
        """
        older_allowed = catch_up_limit if missed == "catch_up" else 0
        times: list[datetime] = []
        older = 0
        walker = croniter(self.expression, (now + _EPSILON).astimezone(self.zone))
        while len(times) < MAX_FIRES_PER_TICK:
            try:
                moment = walker.get_prev(datetime).astimezone(UTC)
            except CroniterBadDateError:
                break
            if moment <= after:
                break
            if moment < now - grace:
                if older >= older_allowed:
                    break
                older += 1
            times.append(moment)
        return sorted(times)
