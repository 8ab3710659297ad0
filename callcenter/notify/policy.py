"""Pure sending rules for SMS: retry backoff, quiet hours, per-number rate limit, numbers.

No I/O and no clock: every function takes `now`. The dispatcher asks these before and
after each send.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Iterable

__all__ = ["backoff_delay", "in_quiet_hours", "quiet_hours_end", "rate_limited_until", "mobile_number"]

_MOBILE = re.compile(r"1[3-9]\d{9}")


def mobile_number(raw: str | None) -> str | None:
    """The 11-digit mainland mobile number in `raw` (spaces, dashes, +86/0086 allowed), else None.

    Landlines and anonymous reporters (no number) cannot receive SMS.
    """
    if not raw:
        return None
    digits = re.sub(r"[\s\-()]", "", raw)
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix):]
            break
    return digits if _MOBILE.fullmatch(digits) else None


def backoff_delay(attempts: int, base_s: float, max_s: float) -> timedelta:
    """Wait before the next try after `attempts` failed tries: base, 2·base, 4·base … capped."""
    exponent = max(0, attempts - 1)
    return timedelta(seconds=min(max_s, base_s * (2 ** min(exponent, 32))))


def in_quiet_hours(now: datetime, start: time, end: time) -> bool:
    """True if `now` falls in the quiet period [start, end), which may span midnight."""
    if start == end:
        return False
    t = now.time()
    if start < end:
        return start <= t < end
    return t >= start or t < end


def quiet_hours_end(now: datetime, start: time, end: time) -> datetime:
    """When sending may resume: `now` itself outside quiet hours, else the next `end`."""
    if not in_quiet_hours(now, start, end):
        return now
    resume = datetime.combine(now.date(), end)
    return resume if resume > now else resume + timedelta(days=1)


def rate_limited_until(recent_sends: Iterable[datetime], now: datetime, limit: int, window: timedelta) -> datetime | None:
    """None if one more SMS may go to a number now, else when the oldest send leaves the window."""
    in_window = sorted(t for t in recent_sends if now - window < t <= now)
    if len(in_window) < limit:
        return None
    return in_window[len(in_window) - limit] + window
