"""Working-time calendar (工作日历): which days are workdays and how deadlines are counted.

Owns the rules for working hours (default 9:00–12:00 and 13:30–17:30), Chinese statutory
holidays and make-up workdays (调休) from the ``chinese_calendar`` package, a city holiday
file that overrides the package and covers years it does not know, and arithmetic in
working hours/days with the yellow/red deadline status. Pure: every time is a parameter.
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Iterable, Literal, Mapping

import chinese_calendar

from case_core.domain.csv_text import checked_lines
from case_core.domain.reference import RowError

__all__ = [
    "WorkCalendar", "CalendarError", "UncoveredYearWarning", "HolidayEntry",
    "load_holiday_file", "DeadlineStatus",
]

DeadlineStatus = Literal["on_time", "yellow", "overdue"]

DEFAULT_WORK_PERIODS = ((time(9, 0), time(12, 0)), (time(13, 30), time(17, 30)))

# A calendar with no workday at all would make deadline search loop forever.
_MAX_SEARCH_DAYS = 3 * 366


class CalendarError(ValueError):
    """A calendar that cannot work: bad periods, a bad holiday file, no workdays ahead."""


class UncoveredYearWarning(UserWarning):
    """Neither ``chinese_calendar`` nor the city file covers a year; weekends are assumed."""


@dataclass(frozen=True)
class HolidayEntry:
    """One day from the city holiday file: a holiday, or a (make-up) workday."""

    day: date
    workday: bool
    name: str = ""


def load_holiday_file(path: str | Path) -> tuple[dict[date, HolidayEntry], list[RowError]]:
    """Read ``date,kind,name`` rows (kind ``holiday`` | ``workday``); bad rows become errors.

    Entries override ``chinese_calendar`` day by day. For a year the package does not
    know, list all of that year's holidays and make-up workdays: any year present in
    the file counts as covered (no warning), with Monday–Friday for unlisted days.
    """
    entries: dict[date, HolidayEntry] = {}
    errors: list[RowError] = []
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [RowError(0, f"cannot read holiday file: {exc}")]
    lines, quoting = checked_lines(text)
    errors += [RowError(line, reason) for line, reason in quoting]
    if any(line == 1 for line, _ in quoting):
        return {}, errors
    reader = csv.DictReader(lines)
    missing = {"date", "kind"} - set(reader.fieldnames or ())
    if missing:
        return {}, [RowError(1, f"missing columns: {', '.join(sorted(missing))}")]
    for row in reader:
        line = reader.line_num  # the physical line: blanked lines keep the numbering
        raw_day = (row.get("date") or "").strip()
        kind = (row.get("kind") or "").strip()
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            errors.append(RowError(line, f"date {raw_day!r} is not YYYY-MM-DD"))
            continue
        if kind not in ("holiday", "workday"):
            errors.append(RowError(line, f"kind {kind!r} must be 'holiday' or 'workday'"))
            continue
        if day in entries:
            errors.append(RowError(line, f"date {day} listed twice"))
            continue
        entries[day] = HolidayEntry(day, kind == "workday", (row.get("name") or "").strip())
    return entries, errors


class WorkCalendar:
    """Working days and hours; counts deadlines in working time.

    Day rules, first match wins: the city holiday file, then ``chinese_calendar``, then
    Monday–Friday (with an ``UncoveredYearWarning`` once per year unless the city file
    has entries for that year).
    """

    def __init__(self, work_periods: Iterable[tuple[time, time]] = DEFAULT_WORK_PERIODS,
                 holiday_file: str | Path | Mapping[date, HolidayEntry] | None = None) -> None:
        periods = tuple(work_periods)
        if not periods:
            raise CalendarError("at least one working period is needed")
        for i, (start, end) in enumerate(periods):
            if not (isinstance(start, time) and isinstance(end, time)) or start >= end:
                raise CalendarError(f"working period {i + 1} must be two times, start < end")
            if i and periods[i - 1][1] > start:
                raise CalendarError("working periods must be in order and not overlap")
        self.work_periods = periods
        self.hours_per_day = sum(
            (_seconds(e) - _seconds(s)) for s, e in periods) / 3600
        if holiday_file is None:
            self._city: Mapping[date, HolidayEntry] = {}
        elif isinstance(holiday_file, Mapping):
            self._city = dict(holiday_file)
        else:
            entries, errors = load_holiday_file(holiday_file)
            if errors:
                # A silently skipped holiday row would shift every deadline around it.
                detail = "; ".join(f"line {e.line}: {e.reason}" for e in errors[:10])
                raise CalendarError(f"holiday file {holiday_file}: {detail}")
            self._city = entries
        self._city_years = {d.year for d in self._city}
        self._warned_years: set[int] = set()
        # Deadline arithmetic asks about the same few days over and over.
        self._day_cache: dict[date, bool] = {}

    # ------------------------------------------------------------------ days
    def is_workday(self, day: date) -> bool:
        """True if ``day`` is a working day (make-up weekend workdays included)."""
        if isinstance(day, datetime):
            day = day.date()
        cached = self._day_cache.get(day)
        if cached is None:
            cached = self._day_cache[day] = self._is_workday(day)
        return cached

    def _is_workday(self, day: date) -> bool:
        entry = self._city.get(day)
        if entry is not None:
            return entry.workday
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            pass
        if day.year not in self._city_years and day.year not in self._warned_years:
            self._warned_years.add(day.year)
            warnings.warn(
                f"no holiday data for {day.year}: counting Monday–Friday as workdays; "
                "add the year to the city holiday file",
                UncoveredYearWarning, stacklevel=2)
        return day.weekday() < 5

    def covers(self, year: int) -> bool:
        """True if holidays for ``year`` are known (city file or ``chinese_calendar``)."""
        if year in self._city_years:
            return True
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def _periods_on(self, day: date, tz) -> list[tuple[datetime, datetime]]:
        if not self.is_workday(day):
            return []
        return [(datetime.combine(day, s, tz), datetime.combine(day, e, tz))
                for s, e in self.work_periods]

    # ------------------------------------------------------------------ arithmetic
    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The moment ``hours`` of working time after ``start``.

        A start outside working time counts from the next working moment; a deadline
        that lands exactly on the end of a period stays there (17:30, not 9:00 next day).
        """
        if hours < 0:
            raise ValueError(f"hours must not be negative, got {hours}")
        if hours == 0:
            return start
        remaining = timedelta(hours=hours)
        day = start.date()
        for _ in range(_MAX_SEARCH_DAYS):
            for p_start, p_end in self._periods_on(day, start.tzinfo):
                if start >= p_end:
                    continue
                seg_start = max(start, p_start)
                available = p_end - seg_start
                if remaining <= available:
                    return seg_start + remaining
                remaining -= available
            day += timedelta(days=1)
        raise CalendarError(f"no working time found within {_MAX_SEARCH_DAYS} days of {start}")

    def add_working_days(self, start: datetime, days: float) -> datetime:
        """The moment ``days`` full working days after ``start`` (same clock time)."""
        if days < 0:
            raise ValueError(f"days must not be negative, got {days}")
        return self.add_working_hours(start, days * self.hours_per_day)

    def working_hours_between(self, a: datetime, b: datetime) -> float:
        """Working hours from ``a`` to ``b`` (negative if ``b`` is before ``a``)."""
        if b < a:
            return -self.working_hours_between(b, a)
        total = timedelta()
        day = a.date()
        while day <= b.date():
            for p_start, p_end in self._periods_on(day, a.tzinfo):
                lo, hi = max(a, p_start), min(b, p_end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total.total_seconds() / 3600

    def deadline_status(self, deadline: datetime, now: datetime, *, started_at: datetime,
                        warn_ratio: float = 0.8) -> DeadlineStatus:
        """``overdue`` after the deadline; ``yellow`` once ``warn_ratio`` of the allowed
        working time is used; else ``on_time``."""
        if not 0 < warn_ratio <= 1:
            raise ValueError(f"warn_ratio must be in (0, 1], got {warn_ratio}")
        if now > deadline:
            return "overdue"
        allowed = self.working_hours_between(started_at, deadline)
        if allowed <= 0:
            return "yellow"
        used = self.working_hours_between(started_at, now)
        return "yellow" if used >= warn_ratio * allowed else "on_time"


def _seconds(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second
