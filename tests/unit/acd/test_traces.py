"""Golden ACD traces: each replayed on a fake clock against the recorded actions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .trace_runner import TRACES_DIR, describe_end, regen_requested, regenerate, run_trace

TRACE_FILES = sorted(TRACES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", TRACE_FILES, ids=[p.stem for p in TRACE_FILES])
def test_golden_trace(path: Path):
    """Replaying the trace's events yields exactly the recorded actions and end state."""
    if regen_requested():
        regenerate(path)
    trace = yaml.safe_load(path.read_text(encoding="utf-8"))
    actual, state, _ = run_trace(trace)
    assert len(actual) == len(trace["steps"])
    for i, (item, actions) in enumerate(zip(trace["steps"], actual)):
        assert actions == item["expect"], f"step {i} ({item.get('event', 'tick')})"
    assert describe_end(state) == trace["end"]
