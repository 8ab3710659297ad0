"""Pure SMS sending rules: backoff, quiet hours, per-number rate limit, mobile numbers."""

from datetime import datetime, time, timedelta

from callcenter.notify.policy import (
    backoff_delay,
    in_quiet_hours,
    mobile_number,
    quiet_hours_end,
    rate_limited_until,
)

NIGHT = (time(21, 0), time(8, 0))


def test_backoff_doubles_and_is_capped():
    """Retries wait 30 s, 60 s, 120 s … and never more than the cap."""
    delays = [backoff_delay(n, 30, 200).total_seconds() for n in range(1, 6)]
    assert delays == [30, 60, 120, 200, 200]


def test_quiet_hours_span_midnight():
    """21:00–08:00 is quiet at 23:00 and 07:59 but not at 08:00 or 20:59."""
    day = datetime(2026, 3, 16)
    assert in_quiet_hours(day.replace(hour=23), *NIGHT)
    assert in_quiet_hours(day.replace(hour=7, minute=59), *NIGHT)
    assert not in_quiet_hours(day.replace(hour=8), *NIGHT)
    assert not in_quiet_hours(day.replace(hour=20, minute=59), *NIGHT)


def test_messages_queued_at_night_wait_until_the_morning():
    """At 22:30 sending resumes at 08:00 the next day; at 06:00 at 08:00 the same day."""
    assert quiet_hours_end(datetime(2026, 3, 16, 22, 30), *NIGHT) == datetime(2026, 3, 17, 8, 0)
    assert quiet_hours_end(datetime(2026, 3, 17, 6, 0), *NIGHT) == datetime(2026, 3, 17, 8, 0)
    assert quiet_hours_end(datetime(2026, 3, 17, 9, 0), *NIGHT) == datetime(2026, 3, 17, 9, 0)


def test_rate_limit_waits_for_the_oldest_send_to_leave_the_window():
    """With 2 per hour and sends at 9:00 and 9:20, the next may go at 10:00."""
    now = datetime(2026, 3, 16, 9, 30)
    sends = [datetime(2026, 3, 16, 9, 0), datetime(2026, 3, 16, 9, 20), datetime(2026, 3, 16, 7, 0)]
    assert rate_limited_until(sends, now, 2, timedelta(hours=1)) == datetime(2026, 3, 16, 10, 0)
    assert rate_limited_until(sends, now, 3, timedelta(hours=1)) is None


def test_only_mainland_mobile_numbers_can_take_sms():
    """+86/0086 and spaces are stripped; landlines, short codes and empty numbers give None."""
    assert mobile_number("+86 138-0013-8001") == "13800138001"
    assert mobile_number("008613900139002") == "13900139002"
    assert mobile_number("057188886666") is None
    assert mobile_number("12319") is None
    assert mobile_number("") is None and mobile_number(None) is None
