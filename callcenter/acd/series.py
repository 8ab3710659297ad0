"""The wallboard's charts of the day: calls offered / answered / abandoned per interval and
the service level over the day, from the queue log (pure; time is a parameter).

Definitions follow `callcenter.acd.stats`: a caller counts as offered in the interval in
which their stay in the queue ended (connect, abandon, overflow, exit, callback expired or
failed); service level = answered within 15 s ÷ answered, over callers who waited on the
line (a kept-place callback is answered, but its wait is not a speed of answer).
`service_level_cum` is the same ratio from the start of the day to the interval's end.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from callcenter.acd.stats import _OFFERED_KINDS, SERVICE_LEVEL_S

__all__ = ["Interval", "day_series"]



@dataclass(frozen=True)
class Interval:
    start: _dt.datetime
    offered: int
    answered: int
    abandoned: int
    service_level: float | None  # of this interval
    service_level_cum: float | None  # from the day's start to this interval's end

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.strftime("%H:%M"), "offered": self.offered, "answered": self.answered,
                "abandoned": self.abandoned, "service_level": self.service_level,
                "service_level_cum": self.service_level_cum}


def _get(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)


def day_series(records: Iterable[Any], day_start: _dt.datetime, now: _dt.datetime,
               interval_s: int = 900, queue: str | None = None) -> list[Interval]:
    """Intervals from `day_start` up to the one holding `now` (queue-log records are
    `QueueEventLogged` objects or mappings with `at`, `kind`, `queue`, `wait_s`, `detail`)."""
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    count = max(1, int((now - day_start).total_seconds() // interval_s) + 1)
    offered, answered, abandoned = [0] * count, [0] * count, [0] * count
    live, fast = [0] * count, [0] * count
    for r in records:
        at, kind = _get(r, "at"), _get(r, "kind")
        if at is None or at < day_start or at > now or kind not in _OFFERED_KINDS:
            continue
        if queue is not None and _get(r, "queue") != queue:
            continue
        i = min(count - 1, int((at - day_start).total_seconds() // interval_s))
        offered[i] += 1
        if kind == "abandon":
            abandoned[i] += 1
        elif kind == "connect":
            answered[i] += 1
            wait = _get(r, "wait_s")
            if _get(r, "detail") != "callback" and wait is not None:
                live[i] += 1
                fast[i] += 1 if wait <= SERVICE_LEVEL_S else 0
    out = []
    cum_live = cum_fast = 0
    for i in range(count):
        cum_live += live[i]
        cum_fast += fast[i]
        out.append(Interval(
            start=day_start + _dt.timedelta(seconds=i * interval_s), offered=offered[i], answered=answered[i],
            abandoned=abandoned[i], service_level=fast[i] / live[i] if live[i] else None,
            service_level_cum=cum_fast / cum_live if cum_live else None))
    return out
