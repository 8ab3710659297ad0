"""Golden-trace runner for IVR flows: replay timed events, compare emitted actions.

A trace file (traces/*.yaml) names a flow, the start variables and a list of steps; each
step is `start` or one event at `at` seconds after the call was answered, with the actions
expected from it. Actions and events are written `{ClassName: {field: value}}`; `SetTimer.at`
is written in seconds since the start. `IVR_REGEN_TRACES=1` rewrites the expectations from
the engine (review the diff before keeping it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from ivr_flows import engine
from ivr_flows.loader import Flow

T0 = dt.datetime(2025, 3, 3, 9, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
TRACES_DIR = Path(__file__).parent / "traces"
_EVENTS = {cls.__name__: cls for cls in engine.Event.__subclasses__()}


def action_to_data(action: engine.Action) -> dict:
    values = {}
    for f in dataclasses.fields(action):
        v = getattr(action, f.name)
        if isinstance(v, dt.datetime):
            v = (v - T0).total_seconds()
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, Mapping):
            v = dict(v)
        values[f.name] = v
    return {type(action).__name__: values}


def event_from_data(data: Mapping) -> engine.Event:
    ((name, fields),) = data.items()
    return _EVENTS[name](**(fields or {}))


def run_trace(trace: dict, flows: Mapping[str, Flow]) -> tuple[list[list[dict]], engine.IvrState]:
    """Replay a trace; returns the actual actions of each step and the final state."""
    flow = flows[trace["flow"]]
    state = None
    actual: list[list[dict]] = []
    for item in trace["steps"]:
        now = T0 + dt.timedelta(seconds=item.get("at", 0))
        if "start" in item:
            state, actions = engine.start(flow, now=now, variables=trace["variables"])
        else:
            state, actions = engine.step(state, event_from_data(item["event"]), now)
        actual.append([action_to_data(a) for a in actions])
    return actual, state


def regenerate(path: Path, flows: Mapping[str, Flow]) -> None:
    trace = yaml.safe_load(path.read_text(encoding="utf-8"))
    actual, state = run_trace(trace, flows)
    for item, actions in zip(trace["steps"], actual):
        item["expect"] = actions
    trace["end"] = {**(trace.get("end") or {}), "finished": state.finished,
                    "end_reason": state.end_reason}
    path.write_text(yaml.safe_dump(trace, allow_unicode=True, sort_keys=False, width=110,
                                   default_flow_style=None),
                    encoding="utf-8")


def regen_requested() -> bool:
    return os.environ.get("IVR_REGEN_TRACES") == "1"
