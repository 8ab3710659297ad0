"""The callback scheduler (回拨 / 回访 calls), pure: `step(state, event, now) -> (state, actions)`.

One scheduler for three kinds of outbound call:

- `queue`: a caller who left the queue asked to be called back and keeps their place —
  queue callbacks go first, in the order the callers originally joined the queue;
- `scheduled`: an agent promised a call at a time (预约回拨);
- `follow_up`: the satisfaction call after a case closes (回访), due within N working days.

Rules: calls are placed only inside calling hours (and, for the kinds in
`holiday_kinds`, only on working days of the `WorkCalendar`); at most `max_concurrent`
calls are out at once; busy / no answer / failure retry after a per-outcome spacing, up to
`max_attempts`, and never after a callback's deadline; every attempt is kept on the
callback and reported as an `AttemptRecorded` action. Each step ends with one `SetTimer`
(when the driver should send `Tick` next, or None). No I/O, no clock: the dialer that
places the calls and persists the state is an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from types import MappingProxyType
from typing import Mapping, Protocol

__all__ = [
    "KINDS", "OUTCOMES", "CallbackPolicy", "Attempt", "Callback", "SchedulerState",
    "CallbackRequested", "CallEnded", "CallbackCancelled", "CallbackRescheduled", "CallNow", "Tick",
    "PlaceCall", "AttemptRecorded", "CallbackAnswered", "CallbackFailed", "SetTimer",
    "CallbackError", "CallbackScheduler",
]

KINDS = ("queue", "scheduled", "follow_up")
OUTCOMES = ("answered", "busy", "no_answer", "failed")
_KIND_ORDER = {k: i for i, k in enumerate(KINDS)}
_SEARCH_DAYS = 370


class Calendar(Protocol):
    def is_workday(self, day: date) -> bool: ...


class CallbackError(ValueError):
    """An event that does not fit the state (unknown callback, call not out, bad value)."""


@dataclass(frozen=True)
class CallbackPolicy:
    calling_hours: tuple[tuple[time, time], ...] = ((time(8, 30), time(12, 0)), (time(13, 30), time(20, 0)))
    max_concurrent: int = 2
    max_attempts: int = 3
    retry_spacing: Mapping[str, timedelta] = field(default_factory=lambda: MappingProxyType({
        "busy": timedelta(minutes=10), "no_answer": timedelta(minutes=30), "failed": timedelta(minutes=5),
    }))
    # Follow-up calls start this long after the case closes and end after N working days.
    follow_up_delay: timedelta = timedelta(hours=1)
    follow_up_days: int = 3
    holiday_kinds: frozenset[str] = frozenset({"follow_up"})

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.max_attempts < 1 or self.follow_up_days < 1:
            raise CallbackError("max_concurrent, max_attempts and follow_up_days must be at least 1")
        if not self.calling_hours or any(a >= b for a, b in self.calling_hours):
            raise CallbackError("calling_hours must be (start, end) pairs with start < end")
        missing = set(OUTCOMES) - {"answered"} - set(self.retry_spacing)
        if missing:
            raise CallbackError(f"retry_spacing needs {', '.join(sorted(missing))}")


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: datetime
    outcome: str | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class Callback:
    id: str
    kind: str
    number: str
    due_at: datetime
    # Order among callbacks due together: when the caller joined the queue, or when it was asked for.
    rank: datetime
    status: str = "pending"  # pending → dialing → answered | pending (retry) | failed | cancelled
    case_number: str | None = None
    agent: str | None = None
    deadline: datetime | None = None
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class SchedulerState:
    callbacks: Mapping[str, Callback] = field(default_factory=lambda: MappingProxyType({}))

    def with_callback(self, cb: Callback) -> "SchedulerState":
        return SchedulerState(MappingProxyType({**self.callbacks, cb.id: cb}))

    @property
    def dialing(self) -> int:
        return sum(1 for cb in self.callbacks.values() if cb.status == "dialing")


# -- events (inputs) -------------------------------------------------------------------
@dataclass(frozen=True)
class CallbackRequested:
    """A new callback. `due_at` for `scheduled`; `queued_at` for `queue` (the caller's place)."""

    callback_id: str
    kind: str
    number: str
    case_number: str | None = None
    due_at: datetime | None = None
    queued_at: datetime | None = None
    agent: str | None = None


@dataclass(frozen=True)
class CallEnded:
    callback_id: str
    outcome: str


@dataclass(frozen=True)
class CallbackCancelled:
    callback_id: str


@dataclass(frozen=True)
class CallbackRescheduled:
    callback_id: str
    due_at: datetime


@dataclass(frozen=True)
class CallNow:
    """An agent pressed "call now": due at once (still within calling hours and the cap)."""

    callback_id: str


@dataclass(frozen=True)
class Tick:
    """Time passed (the timer from the last `SetTimer` fired)."""


# -- actions (outputs) -----------------------------------------------------------------
@dataclass(frozen=True)
class PlaceCall:
    callback_id: str
    kind: str
    number: str
    attempt: int
    case_number: str | None = None
    agent: str | None = None


@dataclass(frozen=True)
class AttemptRecorded:
    callback_id: str
    attempt: int
    outcome: str
    at: datetime


@dataclass(frozen=True)
class CallbackAnswered:
    """Connect the call: to the agent (preview of the case first) or the satisfaction survey."""

    callback_id: str
    kind: str
    case_number: str | None
    agent: str | None


@dataclass(frozen=True)
class CallbackFailed:
    callback_id: str
    reason: str  # "max_attempts" | "deadline" | "no_calling_time"


@dataclass(frozen=True)
class SetTimer:
    at: datetime | None


class CallbackScheduler:
    """The rules (policy + calendar); `step` applies one event to a state."""

    def __init__(self, policy: CallbackPolicy, calendar: Calendar) -> None:
        self.policy = policy
        self.calendar = calendar

    # -- calling time ------------------------------------------------------------------
    def _day_open(self, kind: str, day: date) -> bool:
        return kind not in self.policy.holiday_kinds or self.calendar.is_workday(day)

    def next_calling_time(self, kind: str, t: datetime) -> datetime | None:
        """The first moment at or after `t` a call of `kind` may be placed."""
        day = t.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_open(kind, day):
                for start, end in self.policy.calling_hours:
                    lo, hi = datetime.combine(day, start), datetime.combine(day, end)
                    if t < hi:
                        return max(t, lo)
            day += timedelta(days=1)
            t = datetime.combine(day, time(0))
        return None

    def due_time(self, kind: str, t: datetime) -> datetime:
        """`t` moved to the first calling time at or after it, so a callback's `due_at` (its
        next attempt, as /callbacks shows it) is always a moment a call may be placed."""
        return self.next_calling_time(kind, t) or t

    def follow_up_deadline(self, closed_at: datetime) -> datetime:
        """End of calling hours on the Nth working day after the close day."""
        day, left = closed_at.date(), self.policy.follow_up_days
        for _ in range(_SEARCH_DAYS):
            day += timedelta(days=1)
            if self.calendar.is_workday(day):
                left -= 1
                if left == 0:
                    break
        return datetime.combine(day, self.policy.calling_hours[-1][1])

    # -- step --------------------------------------------------------------------------
    def step(self, state: SchedulerState, event, now: datetime) -> tuple[SchedulerState, list]:
        actions: list = []
        if isinstance(event, CallbackRequested):
            state = self._requested(state, event, now)
        elif isinstance(event, CallEnded):
            state = self._ended(state, event, now, actions)
        elif isinstance(event, CallbackCancelled):
            cb = self._get(state, event.callback_id, ("pending",))
            state = state.with_callback(replace(cb, status="cancelled"))
        elif isinstance(event, CallbackRescheduled):
            cb = self._get(state, event.callback_id, ("pending", "failed"))
            state = state.with_callback(replace(cb, status="pending", due_at=self.due_time(cb.kind, event.due_at),
                                                deadline=max(cb.deadline, event.due_at) if cb.deadline else None))
        elif isinstance(event, CallNow):
            cb = self._get(state, event.callback_id, ("pending",))
            state = state.with_callback(replace(cb, due_at=self.due_time(cb.kind, now)))
        elif not isinstance(event, Tick):
            raise CallbackError(f"unknown event {event!r}")
        state = self._dispatch(state, now, actions)
        actions.append(SetTimer(self.next_wakeup(state, now)))
        return state, actions

    def _get(self, state: SchedulerState, callback_id: str, statuses: tuple[str, ...]) -> Callback:
        cb = state.callbacks.get(callback_id)
        if cb is None:
            raise CallbackError(f"no callback {callback_id!r}")
        if cb.status not in statuses:
            raise CallbackError(f"callback {callback_id!r} is {cb.status}, not {' or '.join(statuses)}")
        return cb

    def _requested(self, state: SchedulerState, ev: CallbackRequested, now: datetime) -> SchedulerState:
        if ev.callback_id in state.callbacks:
            raise CallbackError(f"callback {ev.callback_id!r} already exists")
        if ev.kind not in KINDS:
            raise CallbackError(f"kind {ev.kind!r} is not one of {', '.join(KINDS)}")
        if not ev.number:
            raise CallbackError("a callback needs a number (anonymous callers cannot be called back)")
        deadline = None
        if ev.kind == "queue":
            due, rank = now, ev.queued_at or now
        elif ev.kind == "scheduled":
            if ev.due_at is None:
                raise CallbackError("a scheduled callback needs due_at")
            due, rank = ev.due_at, ev.due_at
        else:
            due = now + self.policy.follow_up_delay
            rank, deadline = due, self.follow_up_deadline(now)
        cb = Callback(ev.callback_id, ev.kind, ev.number, self.due_time(ev.kind, due), rank, case_number=ev.case_number,
                      agent=ev.agent, deadline=deadline)
        return state.with_callback(cb)

    def _ended(self, state: SchedulerState, ev: CallEnded, now: datetime, actions: list) -> SchedulerState:
        if ev.outcome not in OUTCOMES:
            raise CallbackError(f"outcome {ev.outcome!r} is not one of {', '.join(OUTCOMES)}")
        cb = self._get(state, ev.callback_id, ("dialing",))
        last = replace(cb.attempts[-1], outcome=ev.outcome, ended_at=now)
        cb = replace(cb, attempts=cb.attempts[:-1] + (last,))
        actions.append(AttemptRecorded(cb.id, last.number, ev.outcome, now))
        if ev.outcome == "answered":
            actions.append(CallbackAnswered(cb.id, cb.kind, cb.case_number, cb.agent))
            return state.with_callback(replace(cb, status="answered"))
        if len(cb.attempts) >= self.policy.max_attempts:
            actions.append(CallbackFailed(cb.id, "max_attempts"))
            return state.with_callback(replace(cb, status="failed"))
        due = now + self.policy.retry_spacing[ev.outcome]
        start = self.next_calling_time(cb.kind, due)
        if start is None or (cb.deadline is not None and start > cb.deadline):
            actions.append(CallbackFailed(cb.id, "deadline"))
            return state.with_callback(replace(cb, status="failed"))
        return state.with_callback(replace(cb, status="pending", due_at=start))

    def _dispatch(self, state: SchedulerState, now: datetime, actions: list) -> SchedulerState:
        ready: list[Callback] = []
        for cb in state.callbacks.values():
            if cb.status != "pending":
                continue
            start = self.next_calling_time(cb.kind, max(cb.due_at, now))
            if start is None or (cb.deadline is not None and start > cb.deadline):
                actions.append(CallbackFailed(cb.id, "deadline" if start is not None else "no_calling_time"))
                state = state.with_callback(replace(cb, status="failed"))
            elif start <= now:
                ready.append(cb)
            elif start != cb.due_at:
                # Shown as the next attempt (/callbacks): never a time outside calling hours.
                state = state.with_callback(replace(cb, due_at=start))
        ready.sort(key=lambda cb: (_KIND_ORDER[cb.kind], cb.rank, cb.id))
        free = self.policy.max_concurrent - state.dialing
        for cb in ready[: max(0, free)]:
            attempt = Attempt(len(cb.attempts) + 1, now)
            state = state.with_callback(replace(cb, status="dialing", attempts=cb.attempts + (attempt,)))
            actions.append(PlaceCall(cb.id, cb.kind, cb.number, attempt.number, cb.case_number, cb.agent))
        return state

    def next_wakeup(self, state: SchedulerState, now: datetime) -> datetime | None:
        """When a pending callback next becomes callable (None: nothing waits on time)."""
        times = []
        for cb in state.callbacks.values():
            if cb.status == "pending":
                start = self.next_calling_time(cb.kind, max(cb.due_at, now))
                if start is not None and start > now:
                    times.append(start)
        return min(times, default=None)
