"""Unit tests for the working-time calendar around the 2026 National Day holiday."""
from __future__ import annotations

import warnings
from datetime import date, datetime, time

import pytest

from case_core.domain.calendar import (
    CalendarError, UncoveredYearWarning, WorkCalendar, load_holiday_file,
)

CAL = WorkCalendar()


def test_national_day_and_makeup_workdays():
    """Oct 1–7 2026 are off; Sun Sep 20 and Sat Oct 10 are make-up workdays."""
    assert not any(CAL.is_workday(date(2026, 10, d)) for d in range(1, 8))
    assert CAL.is_workday(date(2026, 9, 20)) and date(2026, 9, 20).weekday() == 6
    assert CAL.is_workday(date(2026, 10, 10)) and date(2026, 10, 10).weekday() == 5
    assert not CAL.is_workday(date(2026, 10, 11))


def test_add_hours_skips_the_holiday():
    """8 working hours from Sep 30 16:00 end on Oct 8 17:00 (1.5 h + 6.5 h)."""
    assert CAL.add_working_hours(datetime(2026, 9, 30, 16, 0), 8) == datetime(2026, 10, 8, 17, 0)


def test_add_hours_skips_lunch_and_ends_on_period_end():
    """2 h from 11:00 is 14:30; 1 h from 16:30 ends at 17:30, not next morning."""
    assert CAL.add_working_hours(datetime(2026, 11, 23, 11, 0), 2) == datetime(2026, 11, 23, 14, 30)
    assert CAL.add_working_hours(datetime(2026, 11, 23, 16, 30), 1) == datetime(2026, 11, 23, 17, 30)


def test_start_outside_hours_counts_from_next_period():
    """A report at 20:00 on Friday Oct 9 counts from Saturday Oct 10 (make-up day) 9:00."""
    assert CAL.add_working_hours(datetime(2026, 10, 9, 20, 0), 1) == datetime(2026, 10, 10, 10, 0)


def test_add_working_days_uses_make_up_saturday():
    """3 working days from Thu Oct 8 10:00: Fri 9, Sat 10 (make-up), Mon 12 → Oct 12 10:00."""
    assert CAL.add_working_days(datetime(2026, 10, 8, 10, 0), 3) == datetime(2026, 10, 12, 10, 0)


def test_working_hours_between():
    """Sep 30 9:00 → Oct 8 12:00 is one full day (7 h) plus one morning (3 h)."""
    a, b = datetime(2026, 9, 30, 9, 0), datetime(2026, 10, 8, 12, 0)
    assert CAL.working_hours_between(a, b) == 10
    assert CAL.working_hours_between(b, a) == -10


@pytest.mark.parametrize("now,expected", [
    (datetime(2026, 11, 23, 10, 0), "on_time"),
    (datetime(2026, 11, 24, 16, 0), "yellow"),
    (datetime(2026, 11, 24, 17, 31), "overdue"),
])
def test_deadline_status(now, expected):
    """Two working days from Mon 9:00: yellow after 80 % used, overdue after the end."""
    start = datetime(2026, 11, 23, 9, 0)
    deadline = CAL.add_working_days(start, 2)
    assert deadline == datetime(2026, 11, 24, 17, 30)
    assert CAL.deadline_status(deadline, now, started_at=start) == expected


def test_uncovered_year_warns_once_and_uses_weekdays():
    """2027 is unknown to chinese_calendar 1.11: weekdays count, one warning is issued."""
    cal = WorkCalendar()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cal.is_workday(date(2027, 3, 1)) and not cal.is_workday(date(2027, 3, 6))
        cal.is_workday(date(2027, 3, 2))
    assert [w.category for w in caught] == [UncoveredYearWarning]
    assert not cal.covers(2027) and cal.covers(2026)


def test_city_holiday_file_covers_new_year(tmp_path):
    """A city file gives 2027 holidays/make-up days without warnings and overrides 2026."""
    path = tmp_path / "holidays.csv"
    path.write_text("date,kind,name\n2027-01-01,holiday,元旦\n2027-02-20,workday,春节调休\n"
                    "2026-11-23,holiday,本市纪念日\n", encoding="utf-8")
    cal = WorkCalendar(holiday_file=path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not cal.is_workday(date(2027, 1, 1))
        assert cal.is_workday(date(2027, 2, 20))
        assert cal.is_workday(date(2027, 1, 4))
    assert not cal.is_workday(date(2026, 11, 23))
    assert not cal.is_workday(date(2026, 10, 1))


def test_bad_holiday_rows_are_reported(tmp_path):
    """The loader lists each bad row; the calendar refuses a file with errors."""
    path = tmp_path / "h.csv"
    path.write_text("date,kind,name\n2027-13-01,holiday,x\n2027-01-02,party,y\n"
                    "2027-01-03,holiday,ok\n", encoding="utf-8")
    entries, errors = load_holiday_file(path)
    assert list(entries) == [date(2027, 1, 3)]
    assert [e.line for e in errors] == [2, 3]
    with pytest.raises(CalendarError):
        WorkCalendar(holiday_file=path)


def test_bad_periods_are_rejected():
    """Overlapping or reversed working periods raise CalendarError."""
    with pytest.raises(CalendarError):
        WorkCalendar(work_periods=((time(9), time(12)), (time(11), time(13))))
    with pytest.raises(CalendarError):
        WorkCalendar(work_periods=((time(12), time(9)),))
