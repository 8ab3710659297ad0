"""Golden call-controller traces: each event sequence yields exactly the recorded actions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .trace_runner import TRACES_DIR, describe_end, regen_requested, regenerate, run_trace

TRACE_FILES = sorted(TRACES_DIR.glob("*.yaml"))


def test_there_are_traces():
    """The golden files are there (a renamed folder must not pass silently)."""
    assert len(TRACE_FILES) >= 8


@pytest.mark.parametrize("path", TRACE_FILES, ids=[p.stem for p in TRACE_FILES])
def test_golden_trace(path: Path):
    """Replaying the trace's events yields exactly the recorded actions and end phase."""
    if regen_requested():
        regenerate(path)
    trace = yaml.safe_load(path.read_text(encoding="utf-8"))
    actual, state = run_trace(trace)
    assert len(actual) == len(trace["steps"])
    for i, (item, actions) in enumerate(zip(trace["steps"], actual)):
        expected = "refused" if item.get("refused") else item["expect"]
        assert actions == expected, f"step {i} ({next(iter(item['event']))})"
    assert describe_end(state) == trace["end"]
