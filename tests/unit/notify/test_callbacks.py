"""Callback scheduler core: golden traces of events → actions under a fake clock, and its rules."""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest

from callcenter.callbacks.scheduler import (
    CallbackCancelled,
    CallbackError,
    CallbackPolicy,
    CallbackRequested,
    CallbackRescheduled,
    CallbackScheduler,
    CallEnded,
    CallNow,
    PlaceCall,
    SchedulerState,
    SetTimer,
    Tick,
)
from case_core.domain.calendar import WorkCalendar

GOLDEN = Path(__file__).parent / "golden"
# 2025 (covered by chinese_calendar): 1–5 May is the Labour Day holiday, Sunday 27 April a make-up workday.
SCHEDULER = CallbackScheduler(CallbackPolicy(max_concurrent=2, max_attempts=3), WorkCalendar())


def _fmt(value) -> str:
    if isinstance(value, datetime):
        return value.strftime("%m-%d %H:%M")
    if dataclasses.is_dataclass(value):
        fields = [f"{f.name}={_fmt(getattr(value, f.name))}" for f in dataclasses.fields(value)
                  if getattr(value, f.name) is not None]
        return f"{type(value).__name__}({', '.join(fields)})"
    return repr(value)


class Trace:
    """Feeds events at given times, following SetTimer with Ticks, and writes what happened."""

    def __init__(self, scheduler: CallbackScheduler = SCHEDULER) -> None:
        self.scheduler = scheduler
        self.state = SchedulerState()
        self.timer: datetime | None = None
        self.lines: list[str] = []
        self.now: datetime | None = None

    def at(self, now: datetime, event) -> list:
        # Fire timers that fall before this event, as the driver's one timer would.
        while self.timer is not None and self.timer <= now:
            self._step(self.timer, Tick())
        return self._step(now, event)

    def run_until(self, until: datetime) -> None:
        while self.timer is not None and self.timer <= until:
            self._step(self.timer, Tick())

    def _step(self, now: datetime, event) -> list:
        assert self.now is None or now >= self.now, "the fake clock never goes back"
        self.now = now
        self.state, actions = self.scheduler.step(self.state, event, now)
        self.lines.append(f"{_fmt(now)}  {_fmt(event)}")
        for a in actions:
            if isinstance(a, SetTimer):
                self.timer = a.at
            self.lines.append(f"    -> {_fmt(a)}")
        return actions

    def check(self, name: str) -> None:
        text = "\n".join(self.lines) + "\n"
        path = GOLDEN / f"callbacks_{name}.txt"
        if os.environ.get("UPDATE_GOLDEN") or not path.exists():
            path.write_text(text, encoding="utf-8")
            if not os.environ.get("UPDATE_GOLDEN"):
                pytest.fail(f"golden trace {path.name} was missing and has been written; review it")
        assert text == path.read_text(encoding="utf-8")


def test_follow_up_waits_out_the_holiday_and_retries_busy_and_no_answer():
    """A case closed on the eve of Labour Day is called on the next workday; busy/no answer retry, then answered."""
    t = Trace()
    t.at(datetime(2025, 4, 30, 19, 30), CallbackRequested("f1", "follow_up", "13800138001", case_number="20250430-0007"))
    t.run_until(datetime(2025, 5, 6, 8, 30))
    t.at(datetime(2025, 5, 6, 8, 31), CallEnded("f1", "busy"))
    t.run_until(datetime(2025, 5, 6, 8, 41))
    t.at(datetime(2025, 5, 6, 8, 42), CallEnded("f1", "no_answer"))
    t.run_until(datetime(2025, 5, 6, 9, 12))
    t.at(datetime(2025, 5, 6, 9, 13), CallEnded("f1", "answered"))
    t.check("follow_up_holiday")
    cb = t.state.callbacks["f1"]
    assert cb.status == "answered" and [a.outcome for a in cb.attempts] == ["busy", "no_answer", "answered"]
    assert cb.attempts[0].started_at == datetime(2025, 5, 6, 8, 30)


def test_queue_callbacks_keep_their_place_under_the_concurrency_cap():
    """With both lines busy, waiting queue callbacks are placed in the order their callers joined the queue."""
    t = Trace()
    now = datetime(2025, 3, 17, 10, 0)
    t.at(now, CallbackRequested("x", "scheduled", "13900000008", due_at=now))
    t.at(now, CallbackRequested("y", "scheduled", "13900000009", due_at=now))
    t.at(now, CallbackRequested("c", "queue", "13900000003", queued_at=datetime(2025, 3, 17, 9, 58)))
    t.at(now, CallbackRequested("b", "queue", "13900000002", queued_at=datetime(2025, 3, 17, 9, 57)))
    t.at(now, CallbackRequested("a", "queue", "13900000001", queued_at=datetime(2025, 3, 17, 9, 55)))
    t.at(now + timedelta(minutes=2), CallEnded("x", "answered"))
    t.at(now + timedelta(minutes=3), CallEnded("y", "busy"))
    t.at(now + timedelta(minutes=4), CallEnded("a", "answered"))
    t.check("queue_cap")
    placed = [line.split("callback_id='")[1][0] for line in t.lines if "PlaceCall" in line]
    assert placed == ["x", "y", "a", "b", "c"]
    assert t.state.dialing == 2


def test_scheduled_callback_in_lunch_break_and_max_attempts():
    """A callback promised for 12:30 waits for 13:30; three unanswered tries give up (max_attempts)."""
    t = Trace()
    t.at(datetime(2025, 3, 17, 11, 0), CallbackRequested("s1", "scheduled", "13700000001", due_at=datetime(2025, 3, 17, 12, 30), agent="agent1"))
    t.run_until(datetime(2025, 3, 17, 13, 30))
    t.at(datetime(2025, 3, 17, 13, 31), CallEnded("s1", "no_answer"))
    t.run_until(datetime(2025, 3, 17, 14, 1))
    t.at(datetime(2025, 3, 17, 14, 2), CallEnded("s1", "failed"))
    t.run_until(datetime(2025, 3, 17, 14, 7))
    actions = t.at(datetime(2025, 3, 17, 14, 8), CallEnded("s1", "no_answer"))
    t.check("scheduled_max_attempts")
    assert t.state.callbacks["s1"].status == "failed" and len(t.state.callbacks["s1"].attempts) == 3
    assert any(type(a).__name__ == "CallbackFailed" and a.reason == "max_attempts" for a in actions)


def test_follow_up_gives_up_after_its_working_day_deadline():
    """Follow-up calls stop once the next try would fall after N working days (deadline)."""
    policy = CallbackPolicy(max_attempts=10, follow_up_days=1,
                            retry_spacing={"busy": timedelta(hours=12), "no_answer": timedelta(hours=12), "failed": timedelta(hours=12)})
    t = Trace(CallbackScheduler(policy, WorkCalendar()))
    t.at(datetime(2025, 3, 17, 15, 0), CallbackRequested("f2", "follow_up", "13600000001", case_number="20250317-0001"))
    t.run_until(datetime(2025, 3, 17, 16, 0))
    t.at(datetime(2025, 3, 17, 16, 1), CallEnded("f2", "busy"))
    t.run_until(datetime(2025, 3, 18, 8, 30))
    actions = t.at(datetime(2025, 3, 18, 8, 31), CallEnded("f2", "no_answer"))
    t.check("follow_up_deadline")
    assert t.state.callbacks["f2"].deadline == datetime(2025, 3, 18, 20, 0)
    assert [a.reason for a in actions if type(a).__name__ == "CallbackFailed"] == ["deadline"]


def test_agent_can_reschedule_call_now_and_cancel():
    """Reschedule moves the due time, call-now places it at once, cancel drops a pending one."""
    s, now = SchedulerState(), datetime(2025, 3, 17, 9, 0)
    s, _ = SCHEDULER.step(s, CallbackRequested("x", "scheduled", "13500000001", due_at=now + timedelta(hours=3)), now)
    s, actions = SCHEDULER.step(s, CallbackRescheduled("x", now + timedelta(hours=5)), now)
    assert actions == [SetTimer(datetime(2025, 3, 17, 14, 0))]
    s, actions = SCHEDULER.step(s, CallNow("x"), now)
    assert [type(a).__name__ for a in actions] == ["PlaceCall", "SetTimer"]
    s, _ = SCHEDULER.step(s, CallbackRequested("y", "scheduled", "13500000002", due_at=now + timedelta(hours=1)), now)
    s, actions = SCHEDULER.step(s, CallbackCancelled("y"), now)
    assert s.callbacks["y"].status == "cancelled" and actions == [SetTimer(None)]


def test_illegal_events_raise_clear_errors():
    """Ending a call that is not out, an unknown callback, or a callback without number is refused."""
    s, now = SchedulerState(), datetime(2025, 3, 17, 22, 0)
    s, _ = SCHEDULER.step(s, CallbackRequested("q", "queue", "13500000001"), now)
    with pytest.raises(CallbackError, match="pending, not dialing"):
        SCHEDULER.step(s, CallEnded("q", "busy"), now)
    with pytest.raises(CallbackError, match="no callback"):
        SCHEDULER.step(s, CallbackCancelled("nope"), now)
    with pytest.raises(CallbackError, match="anonymous"):
        SCHEDULER.step(s, CallbackRequested("z", "queue", ""), now)
    with pytest.raises(CallbackError, match="already exists"):
        SCHEDULER.step(s, CallbackRequested("q", "queue", "13500000001"), now)


def test_night_queue_callback_is_placed_at_opening_even_on_a_weekend():
    """A queue callback asked for at 22:00 on Friday is placed at 08:30 Saturday (holidays only bind follow-ups)."""
    s, now = SchedulerState(), datetime(2025, 3, 14, 22, 0)
    s, actions = SCHEDULER.step(s, CallbackRequested("n", "queue", "13500000001"), now)
    assert actions == [SetTimer(datetime(2025, 3, 15, 8, 30))]
    s, actions = SCHEDULER.step(s, Tick(), datetime(2025, 3, 15, 8, 30))
    assert isinstance(actions[0], PlaceCall) and actions[0].attempt == 1


def _in_calling_hours(t: datetime, policy: CallbackPolicy = SCHEDULER.policy) -> bool:
    return any(start <= t.time() < end for start, end in policy.calling_hours)


def test_next_attempt_shown_is_always_inside_calling_hours():
    """due_at (the next attempt /callbacks shows) is a calling time: a follow-up closed at 01:32 is due
    at 08:30, not 02:32; a no-answer at 19:45 retries at 08:30 next workday, not 20:15."""
    s = SchedulerState()
    s, _ = SCHEDULER.step(s, CallbackRequested("f", "follow_up", "13800138001"), datetime(2025, 3, 21, 1, 32))
    assert s.callbacks["f"].due_at == datetime(2025, 3, 21, 8, 30)
    s, _ = SCHEDULER.step(s, CallbackRequested("q", "queue", "13800138002"), datetime(2025, 3, 21, 12, 10))
    assert s.callbacks["q"].due_at == datetime(2025, 3, 21, 13, 30)
    s, _ = SCHEDULER.step(s, Tick(), datetime(2025, 3, 21, 19, 40))  # Friday evening: both placed
    assert {cb.status for cb in s.callbacks.values()} == {"dialing"}
    s, _ = SCHEDULER.step(s, CallEnded("f", "no_answer"), datetime(2025, 3, 21, 19, 45))
    assert s.callbacks["f"].due_at == datetime(2025, 3, 24, 8, 30)  # Monday: follow-ups skip the weekend
    s, _ = SCHEDULER.step(s, CallEnded("q", "busy"), datetime(2025, 3, 21, 19, 55))
    assert s.callbacks["q"].due_at == datetime(2025, 3, 22, 8, 30)  # queue callbacks call on Saturday
    s, _ = SCHEDULER.step(s, CallbackRescheduled("q", datetime(2025, 3, 22, 12, 15)), datetime(2025, 3, 21, 20, 0))
    assert s.callbacks["q"].due_at == datetime(2025, 3, 22, 13, 30)


def test_a_stale_due_time_is_moved_into_calling_hours_on_the_next_step():
    """A pending callback loaded with a due time outside calling hours (an older row) is shown at its real next attempt."""
    from callcenter.callbacks.scheduler import Callback

    stale = Callback("r", "follow_up", "13800138003", datetime(2025, 3, 17, 2, 32), datetime(2025, 3, 17, 2, 32))
    s, actions = SCHEDULER.step(SchedulerState().with_callback(stale), Tick(), datetime(2025, 3, 17, 3, 0))
    assert s.callbacks["r"].due_at == datetime(2025, 3, 17, 8, 30) and actions == [SetTimer(datetime(2025, 3, 17, 8, 30))]


def test_every_pending_due_time_falls_in_calling_hours_on_workdays():
    """Over a week of requests and outcomes every 17 minutes, no pending callback is ever due outside calling
    hours, nor a follow-up on a weekend."""
    s, now, n = SchedulerState(), datetime(2025, 3, 17, 0, 0), 0
    while now < datetime(2025, 3, 24):
        if n % 3 == 0:
            s, _ = SCHEDULER.step(s, CallbackRequested(f"c{n}", ("queue", "follow_up", "scheduled")[n % 9 // 3],
                                                       "13800138000", due_at=now + timedelta(minutes=n % 50)), now)
        for cb in list(s.callbacks.values()):
            if cb.status == "dialing":
                s, _ = SCHEDULER.step(s, CallEnded(cb.id, ("busy", "no_answer", "failed")[n % 3]), now)
        s, _ = SCHEDULER.step(s, Tick(), now)
        for cb in s.callbacks.values():
            if cb.status == "pending":
                assert _in_calling_hours(cb.due_at), (cb, now)
                assert cb.kind != "follow_up" or WorkCalendar().is_workday(cb.due_at.date()), (cb, now)
        now, n = now + timedelta(minutes=17), n + 1
    assert n > 500 and any(cb.status == "failed" for cb in s.callbacks.values())
