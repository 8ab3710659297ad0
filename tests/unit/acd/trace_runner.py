"""Golden-trace runner for the ACD: replay timed events on a fake clock, compare actions.

A trace (traces/*.yaml) configures agents and queues, then lists steps. A step is either
`at: <s>` with one `event: {ClassName: {field: value}}`, or `tick: <s>` — the driver's
timer firing, which must be exactly `next_deadline(state)` (so the traces check the
deadlines too). Each step lists the actions expected, written `{ClassName: {field: value}}`
without fields that are None; datetimes are seconds since the start, and
`QueueEventLogged.at` (always the step's time) is left out. `end` gives each agent as
`status[:reason|:call]`, each queue's entries as `call:status` in service order, and the
next deadline. `ACD_REGEN_TRACES=1` rewrites the expectations from the engine: review the
diff before keeping it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from callcenter import acd

T0 = dt.datetime(2025, 3, 3, 9, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
TRACES_DIR = Path(__file__).parent / "traces"
_EVENTS = {cls.__name__: cls for cls in acd.Event.__subclasses__()}


class FakeClock:
    """The driver's clock, moved by hand; it never goes back."""

    def __init__(self, start: dt.datetime = T0):
        self.now = start

    def advance_to(self, seconds: float) -> dt.datetime:
        target = T0 + dt.timedelta(seconds=seconds)
        assert target >= self.now, f"trace goes back in time to {seconds}s"
        self.now = target
        return target


def seconds(value: dt.datetime | None) -> float | None:
    return None if value is None else (value - T0).total_seconds()


def action_to_data(action: acd.Action) -> dict:
    values = {}
    for f in dataclasses.fields(action):
        v = getattr(action, f.name)
        if v is None or (isinstance(action, acd.QueueEventLogged) and f.name == "at"):
            continue
        values[f.name] = seconds(v) if isinstance(v, dt.datetime) else v
    return {type(action).__name__: values}


def event_from_data(data: Mapping) -> acd.Event:
    ((name, fields),) = data.items()
    return _EVENTS[name](**(fields or {}))


def _calling_hours(spec: list[str] | None):
    if not spec:
        return acd.always_callable
    start, end = (dt.time.fromisoformat(t) for t in spec)
    return lambda now: start <= now.timetz().replace(tzinfo=None) < end


def config_from(trace: dict) -> acd.AcdConfig:
    queues = []
    for q in trace["queues"]:
        q = dict(q)
        if "overflow" in q:
            q["overflow"] = acd.OverflowTarget(**q["overflow"])
        queues.append(acd.QueueConfig(**q))
    agents = [acd.AgentConfig(**a) for a in trace["agents"]]
    return acd.AcdConfig.build(queues, agents, _calling_hours(trace.get("calling_hours")))


def describe_end(state: acd.AcdState) -> dict:
    agents = {}
    for a in state.agents.values():
        extra = a.pause_reason if a.status == "paused" else (a.call.call if a.call else None)
        agents[a.id] = f"{a.status}:{extra}" if extra else a.status
    queues = {name: [f"{e.call}:{e.status}" for e in state.queue_entries(name)]
              for name in state.config.queues}
    return {"agents": agents, "queues": queues, "next_deadline": seconds(acd.next_deadline(state))}


def run_trace(trace: dict) -> tuple[list[list[dict]], acd.AcdState, list[acd.QueueEventLogged]]:
    """Replay a trace; the actual actions of each step, the final state, the queue log."""
    clock = FakeClock()
    state = acd.new_state(config_from(trace), clock.now)
    actual: list[list[dict]] = []
    log: list[acd.QueueEventLogged] = []
    for i, item in enumerate(trace["steps"]):
        if "tick" in item:
            deadline = seconds(acd.next_deadline(state))
            assert deadline == item["tick"], \
                f"step {i}: tick at {item['tick']}s but next_deadline is {deadline}s"
            event = acd.Tick()
            now = clock.advance_to(item["tick"])
        else:
            event = event_from_data(item["event"])
            now = clock.advance_to(item["at"])
        state, actions = acd.step(state, event, now)
        log += [a for a in actions if isinstance(a, acd.QueueEventLogged)]
        actual.append([action_to_data(a) for a in actions])
    return actual, state, log


def regenerate(path: Path) -> None:
    trace = yaml.safe_load(path.read_text(encoding="utf-8"))
    actual, state, _ = run_trace(trace)
    for item, actions in zip(trace["steps"], actual):
        item["expect"] = actions
    trace["end"] = describe_end(state)
    path.write_text(yaml.safe_dump(trace, allow_unicode=True, sort_keys=False, width=100,
                                   default_flow_style=None), encoding="utf-8")


def regen_requested() -> bool:
    return os.environ.get("ACD_REGEN_TRACES") == "1"
