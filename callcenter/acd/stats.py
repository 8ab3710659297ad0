"""Wallboard figures from the ACD state and the queue log, and the log's CSV export.

Definitions (the glossary's, made exact):
- offered: callers whose stay in the queue ended — connected, abandoned, overflowed,
  left (`exit`), or a callback that expired or failed. Callers still waiting are not
  offered yet, so they do not lower the rates.
- answer_rate = answered ÷ offered; abandon_rate = abandoned ÷ offered.
- service_level_15s = answered within 15 s ÷ answered, and ASA (mean wait until
  connected), count only callers who waited on the line: a kept-place callback is
  answered, but its wait is not a speed of answer.
- AHT = mean of talk + wrap-up over calls whose wrap-up has ended (complete or transfer).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, fields

from callcenter.acd.actions import QueueEventLogged
from callcenter.acd.model import AGENT_STATUSES, AcdState

__all__ = ["QueueStats", "AgentSnapshot", "Wallboard", "queue_stats", "agent_snapshots",
           "wallboard", "log_to_csv", "CSV_COLUMNS", "SERVICE_LEVEL_S"]

SERVICE_LEVEL_S = 15
_OFFERED_KINDS = ("connect", "abandon", "overflow", "exit", "callback_expired", "callback_failed")
CSV_COLUMNS = tuple(f.name for f in fields(QueueEventLogged))


@dataclass(frozen=True)
class QueueStats:
    queue: str
    waiting: int  # callers on the line (waiting or ringing)
    callbacks_waiting: int  # kept places whose callback is not placed yet, or being dialled
    longest_wait_s: float  # of callers on the line
    offered: int
    answered: int
    abandoned: int
    overflowed: int
    answer_rate: float | None
    abandon_rate: float | None
    service_level_15s: float | None
    asa_s: float | None
    aht_s: float | None


@dataclass(frozen=True)
class AgentSnapshot:
    agent: str
    extension: str
    status: str
    pause_reason: str | None
    time_in_status_s: float
    calls_taken: int
    call: str | None


@dataclass(frozen=True)
class Wallboard:
    queues: tuple[QueueStats, ...]
    agents: tuple[AgentSnapshot, ...]
    agents_by_status: dict[str, int]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def queue_stats(state: AcdState, log: Iterable[QueueEventLogged], now: _dt.datetime,
                since: _dt.datetime | None = None) -> list[QueueStats]:
    """One row per configured queue; `since` limits the log (e.g. to today)."""
    records = [r for r in log if since is None or r.at >= since]
    in_wrap_up = {(a.id, a.call.call) for a in state.agents.values()
                  if a.status == "wrap_up" and a.call is not None}
    wraps = {(r.agent, r.call, r.queue): r.wrap_s for r in records if r.kind == "wrap_up"}
    result = []
    for name in state.config.queues:
        mine = [r for r in records if r.queue == name]
        on_line = [e for e in state.entries.values()
                   if e.queue == name and e.status in ("waiting", "ringing")]
        kept = [e for e in state.entries.values()
                if e.queue == name and e.status in ("callback", "dialing")]
        connects = [r for r in mine if r.kind == "connect"]
        live = [r.wait_s for r in connects if r.detail != "callback"]
        abandoned = sum(1 for r in mine if r.kind == "abandon")
        overflowed = sum(1 for r in mine if r.kind == "overflow")
        offered = sum(1 for r in mine if r.kind in _OFFERED_KINDS)
        handle = [r.talk_s + wraps[(r.agent, r.call, r.queue)]
                  for r in mine if r.kind in ("complete", "transfer")
                  and (r.agent, r.call) not in in_wrap_up
                  and (r.agent, r.call, r.queue) in wraps]
        result.append(QueueStats(
            queue=name,
            waiting=len(on_line),
            callbacks_waiting=len(kept),
            longest_wait_s=max(((now - e.joined_at).total_seconds() for e in on_line),
                               default=0.0),
            offered=offered,
            answered=len(connects),
            abandoned=abandoned,
            overflowed=overflowed,
            answer_rate=_ratio(len(connects), offered),
            abandon_rate=_ratio(abandoned, offered),
            service_level_15s=_ratio(sum(1 for w in live if w <= SERVICE_LEVEL_S), len(live)),
            asa_s=_mean(live),
            aht_s=_mean(handle),
        ))
    return result


def agent_snapshots(state: AcdState, now: _dt.datetime) -> list[AgentSnapshot]:
    return [AgentSnapshot(agent=a.id, extension=a.extension, status=a.status,
                          pause_reason=a.pause_reason, time_in_status_s=a.time_in_status_s(now),
                          calls_taken=a.calls_taken, call=a.call.call if a.call else None)
            for a in state.agents.values()]


def wallboard(state: AcdState, log: Iterable[QueueEventLogged], now: _dt.datetime,
              since: _dt.datetime | None = None) -> Wallboard:
    """Everything the supervisor wallboard shows about queues and agents."""
    agents = agent_snapshots(state, now)
    by_status = {s: 0 for s in AGENT_STATUSES}
    for a in agents:
        by_status[a.status] += 1
    return Wallboard(queues=tuple(queue_stats(state, log, now, since)), agents=tuple(agents),
                     agents_by_status=by_status)


def log_to_csv(log: Iterable[QueueEventLogged]) -> str:
    """The queue log as CSV (UTF-8 text, header row, ISO 8601 times, empty for None)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in log:
        row = []
        for column in CSV_COLUMNS:
            value = getattr(r, column)
            if value is None:
                value = ""
            elif isinstance(value, _dt.datetime):
                value = value.isoformat()
            elif isinstance(value, float):
                value = f"{value:g}"
            row.append(value)
        writer.writerow(row)
    return out.getvalue()
