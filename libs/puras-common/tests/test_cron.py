"""Cron schedules: checked expressions and zones, fire times through daylight saving, and which
missed fire times a tick fires under ``skip`` and ``catch_up``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from puras_common.cron import MAX_FIRES_PER_TICK, Cron, CronError

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "timezone", "field"),
    [
        ("", "UTC", "cron"),
        ("* * *", "UTC", "cron"),
        ("61 * * * *", "UTC", "cron"),
        ("* " * 80, "UTC", "cron"),
        ("0 0 30 2 *", "UTC", "cron"),  # 30 February: never
        ("* * * * *", "Mars/Olympus", "timezone"),
        ("* * * * *", "../../etc/passwd", "timezone"),
    ],
)
def test_what_cannot_be_a_schedule_is_refused_naming_the_field(
    expression: str, timezone: str, field: str
) -> None:
    with pytest.raises(CronError) as raised:
        Cron.parse(expression, timezone)
    assert raised.value.field == field


def test_fire_times_follow_the_zone_through_daylight_saving() -> None:
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    # 29 March 2026: 02:30 does not exist in Berlin; it fires at 03:00 local (01:00 UTC).
    times = cron.upcoming(datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert times == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    assert Cron.parse("* * * * * */15").upcoming(T0, 2) == [
        T0 + timedelta(seconds=15),
        T0 + timedelta(seconds=30),
    ]


def test_a_tick_fires_what_is_due_within_grace_and_nothing_twice() -> None:
    cron = Cron.parse("* * * * * *")
    due = cron.due(
        after=T0,
        now=T0 + timedelta(seconds=3),
        grace=timedelta(seconds=10),
        missed="skip",
        catch_up_limit=0,
    )
    assert due == [T0 + timedelta(seconds=s) for s in (1, 2, 3)]
    # The next tick starts where this one ended.
    later = cron.due(
        after=due[-1],
        now=T0 + timedelta(seconds=3, milliseconds=900),
        grace=timedelta(seconds=10),
        missed="skip",
        catch_up_limit=0,
    )
    assert later == []


def test_missed_fire_times_are_skipped_or_caught_up_to_the_limit() -> None:
    cron = Cron.parse("*/5 * * * *")  # every five minutes
    now = T0 + timedelta(hours=1, minutes=2)  # down for an hour
    grace = timedelta(seconds=60)
    assert cron.due(after=T0, now=now, grace=grace, missed="skip", catch_up_limit=3) == []
    assert cron.due(after=T0, now=now, grace=grace, missed="catch_up", catch_up_limit=3) == [
        T0 + timedelta(minutes=50),
        T0 + timedelta(minutes=55),
        T0 + timedelta(minutes=60),
    ]
    on_time = T0 + timedelta(hours=1, seconds=30)
    assert cron.due(after=T0, now=on_time, grace=grace, missed="skip", catch_up_limit=0) == [
        T0 + timedelta(hours=1)
    ]


def test_one_tick_is_bounded_whatever_the_expression() -> None:
    cron = Cron.parse("* * * * * *")
    due = cron.due(
        after=T0 - timedelta(days=30),
        now=T0,
        grace=timedelta(days=30),
        missed="skip",
        catch_up_limit=0,
    )
    assert len(due) == MAX_FIRES_PER_TICK and due[-1] == T0
