"""Golden-trace runner for the call controller: replay events, compare the actions.

A trace (traces/*.yaml) starts a call (`call: {kind, caller, has_flow, acd}`; a callback
also names its `agent`), then lists
steps: `event: {ClassName: {field: value}}` and the actions expected, written
`{ClassName: {field: value}}` without fields that are None; nested events (an ACD event the
call tells the ACD, an IVR event it feeds its flow) are written the same way. `end` gives the
phase and the path. A step may say `refused: true`: the event has no row in that phase.
`CALLS_REGEN_TRACES=1` rewrites the expectations from the controller: review the diff.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from callcenter.calls import controller
from callcenter.calls import model as m

TRACES_DIR = Path(__file__).parent / "traces"
_EVENTS = {cls.__name__: cls for cls in m.CallEvent.__subclasses__()}


def to_data(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is None:
                continue
            fields[f.name] = to_data(v)
        return {type(value).__name__: fields}
    if isinstance(value, tuple):
        return [to_data(v) for v in value]
    return value


def event_from_data(data: Mapping) -> m.CallEvent:
    ((name, fields),) = data.items()
    return _EVENTS[name](**(fields or {}))


def start(trace: dict) -> m.CallState:
    c = dict(trace["call"])
    return controller.new_call(c.pop("id", "c1"), c.pop("kind", "inbound"), caller=c.pop("caller", None),
                               has_flow=c.pop("has_flow", True), acd_present=c.pop("acd", True),
                               urgent=c.pop("urgent", False), agent=c.pop("agent", None))


def describe_end(state: m.CallState) -> dict:
    return {"phase": state.phase, "path": list(state.path)}


def run_trace(trace: dict) -> tuple[list, m.CallState]:
    """Replay a trace: for each step its actions (or "refused"), and the final state."""
    state = start(trace)
    actual: list = []
    for item in trace["steps"]:
        event = event_from_data(item["event"])
        try:
            state, actions = controller.step(state, event, None)
        except m.IllegalCallEvent:
            actual.append("refused")
            continue
        actual.append([to_data(a) for a in actions])
    return actual, state


def regenerate(path: Path) -> None:
    trace = yaml.safe_load(path.read_text(encoding="utf-8"))
    actual, state = run_trace(trace)
    for item, actions in zip(trace["steps"], actual):
        if actions == "refused":
            item.pop("expect", None)
            item["refused"] = True
        else:
            item.pop("refused", None)
            item["expect"] = actions
    trace["end"] = describe_end(state)
    path.write_text(yaml.safe_dump(trace, allow_unicode=True, sort_keys=False, width=110,
                                   default_flow_style=None), encoding="utf-8")


def regen_requested() -> bool:
    return os.environ.get("CALLS_REGEN_TRACES") == "1"
