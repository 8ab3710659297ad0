"""Golden traces: every shipped flow replayed against recorded event sequences."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ivr_flows.loader import default_flows_dir, load_flows

from .trace_runner import TRACES_DIR, regen_requested, regenerate, run_trace

TRACE_FILES = sorted(TRACES_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def flows():
    return load_flows(default_flows_dir())


def test_traces_cover_every_shipped_flow(flows):
    """Each default flow has at least one golden trace."""
    traced = {yaml.safe_load(p.read_text(encoding="utf-8"))["flow"] for p in TRACE_FILES}
    assert set(flows) <= traced


@pytest.mark.parametrize("path", TRACE_FILES, ids=[p.stem for p in TRACE_FILES])
def test_golden_trace(path: Path, flows):
    """Replaying the trace's events yields exactly the recorded actions and end state."""
    if regen_requested():
        regenerate(path, flows)
    trace = yaml.safe_load(path.read_text(encoding="utf-8"))
    actual, state = run_trace(trace, flows)
    for i, (item, actions) in enumerate(zip(trace["steps"], actual)):
        assert actions == item["expect"], f"step {i} ({item.get('event', 'start')})"
    end = trace["end"]
    assert (state.finished, state.end_reason) == (end["finished"], end["end_reason"])
    for name, value in (end.get("variables") or {}).items():
        assert state.variables.get(name) == value, f"variable {name}"
