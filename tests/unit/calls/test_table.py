"""The call-state table: complete, consistent with the controller, and drawable."""

from __future__ import annotations

import pytest
import yaml

from callcenter.calls import controller, table
from callcenter.calls import model as m

from .trace_runner import TRACES_DIR, event_from_data, start


def test_every_row_names_a_known_phase_event_guard_and_effect():
    """Rows refer only to phases, events, guards and effects that exist."""
    events = {cls.__name__ for cls in m.CallEvent.__subclasses__()}
    actions = {cls.__name__ for cls in m.CallAction.__subclasses__()}
    for row in table.TRANSITIONS:
        assert row.state in (*m.PHASES, table.ANY), row
        assert row.next_state in (*m.PHASES, table.SAME), row
        assert row.event in events, row
        assert row.guard is None or row.guard in controller.GUARDS, row
        assert row.effect in controller.EFFECTS, row
        assert set(row.actions) <= actions, row


def test_transitions_for_the_diagram():
    """`transitions()` gives rows with state, event, next_state and actions (ARCHITECTURE.md draws them)."""
    rows = table.transitions()
    assert len(rows) == len(table.TRANSITIONS)
    first = rows[0]
    assert (first.state, first.event, first.next_state) == ("offered", "CallStarted", "extension_ringing")
    assert "DialAgent" in first.actions
    assert "| queued | QueueBridged |  | bridged | StopPlayback, ToIvr |" in table.render_table()


def test_every_live_phase_can_end():
    """From every phase but "ended", a hang-up by either side has a row."""
    for phase in m.PHASES:
        if phase == "ended":
            continue
        state = m.CallState(call_id="c1", kind="inbound", phase=phase)
        assert controller.step(state, m.RemoteEnded("remote", "bye"))[0].phase == "ended"
        assert controller.step(state, m.HangupRequested("x"))[0].phase == "ended"


def test_an_event_without_a_row_is_refused():
    """A desk hold while the caller is still in the IVR is illegal: IllegalCallEvent, state unchanged."""
    state = m.CallState(call_id="c1", kind="inbound", phase="ivr", answered=True)
    with pytest.raises(m.IllegalCallEvent, match="DeskHoldRequested in phase ivr"):
        controller.step(state, m.DeskHoldRequested(True))


@pytest.mark.parametrize("path", sorted(TRACES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_effects_emit_only_what_their_row_declares(path):
    """Every action a step emits in the golden traces is one its table row lists."""
    trace = yaml.safe_load(path.read_text(encoding="utf-8"))
    state = start(trace)
    for item in trace["steps"]:
        event = event_from_data(item["event"])
        try:
            row = controller.lookup(state, event)
        except m.IllegalCallEvent:
            continue
        state, actions = controller.step(state, event)
        assert {type(a).__name__ for a in actions} <= set(row.actions), (row, actions)
