"""ACD engine: illegal events, ring cancellation, callbacks, transfers, deadlines."""

from __future__ import annotations

import datetime as dt

import pytest

from callcenter import acd

from .helpers import Run, T0, at, config, of, queue


def logged_in(cfg, *agents):
    run = Run(cfg)
    for a in agents:
        run(0, acd.AgentLoggedIn(a))
    return run


def test_answer_by_agent_not_ringing_is_illegal_and_names_the_status():
    """AgentAnswered from a ready agent raises IllegalEvent saying what the agent is doing."""
    run = logged_in(config(queue()), "a1")
    with pytest.raises(acd.IllegalEvent, match="agent a1 is ready with call None, not 'c1'"):
        run(1, acd.AgentAnswered("a1", "c1"))


def test_illegal_event_lists_allowed_triggers():
    """A trigger with no table row names the triggers allowed in that status."""
    run = Run(config(queue()))
    with pytest.raises(acd.IllegalEvent, match=r"logged_out: AgentReady is not allowed "
                                                r"\(allowed: AgentLoggedIn\)"):
        run(1, acd.AgentReady("a1"))


@pytest.mark.parametrize("event, message", [
    (acd.AgentLoggedIn("zz"), "unknown agent 'zz'"),
    (acd.CallerJoined("nope", "c1", "138"), "unknown queue 'nope'"),
    (acd.CallerAbandoned("c9"), "call 'c9' is not in any queue"),
    (acd.CallbackAnswered("c9"), "call 'c9' is not in any queue"),
])
def test_unknown_references_raise(event, message):
    """Events naming unknown agents, queues or calls raise a specific IllegalEvent."""
    with pytest.raises(acd.IllegalEvent, match=message):
        Run(config(queue()))(1, event)


def test_malformed_events_raise_at_construction():
    """Empty names, negative priorities and unknown transfer kinds are refused."""
    with pytest.raises(acd.IllegalEvent, match="CallerJoined.call"):
        acd.CallerJoined("report", "", "138")
    with pytest.raises(acd.IllegalEvent, match="priority"):
        acd.CallerJoined("report", "c1", "138", priority=-1)
    with pytest.raises(acd.IllegalEvent, match="kind"):
        acd.TransferRequested("a1", "c1", "fax", "x")


def test_same_call_cannot_join_twice():
    """A call already queued cannot join again."""
    run = Run(config(queue()))
    run(1, acd.CallerJoined("report", "c1", "138"))
    with pytest.raises(acd.IllegalEvent, match="already queued or connected"):
        run(2, acd.CallerJoined("report", "c1", "138"))


def test_time_may_not_go_back_and_must_be_aware():
    """A `now` earlier than the last step, or without a time zone, is refused."""
    run = Run(config(queue()))
    run(10, acd.AgentLoggedIn("a1"))
    with pytest.raises(acd.IllegalEvent, match="time went backwards"):
        run(5, acd.AgentLoggedIn("a2"))
    with pytest.raises(acd.IllegalEvent, match="aware datetime"):
        acd.step(run.state, acd.Tick(), dt.datetime(2025, 3, 3, 9, 1))


def test_illegal_event_leaves_state_untouched():
    """After a refused event the previous state is still the current one, unchanged."""
    run = logged_in(config(queue()), "a1")
    run(1, acd.CallerJoined("report", "c1", "138"))
    before = run.state
    with pytest.raises(acd.IllegalEvent):
        acd.step(before, acd.CallEnded("a1", "c1"), at(2))  # ringing, not on a call
    assert before.agents["a1"].status == "ringing"
    assert before.entries["c1"].status == "ringing"


def test_ringing_agent_who_pauses_hands_the_caller_to_the_next():
    """Pausing while ringing stops the ring and offers the caller to another agent at once."""
    run = logged_in(config(queue()), "a1", "a2")
    run(1, acd.CallerJoined("report", "c1", "138"))
    actions = run(3, acd.AgentPaused("a1", "toilet"))
    assert of(actions, acd.StopRinging) == [acd.StopRinging("a1", "c1")]
    assert [r.agent for r in of(actions, acd.RingAgent)] == ["a2"]
    assert run.agent("a1").pause_reason == "toilet"
    assert "ring_cancelled" in [r.kind for r in run.log]


def test_no_pause_on_no_answer_prefers_untried_agents():
    """With pause_on_no_answer off the agent stays ready, and the next try goes elsewhere."""
    run = logged_in(config(queue(pause_on_no_answer=False)), "a1", "a2")
    run(1, acd.CallerJoined("report", "c1", "138"))
    actions = run(2, acd.AgentNoAnswer("a1", "c1"))
    assert run.agent("a1").status == "ready"
    assert [r.agent for r in of(actions, acd.RingAgent)] == ["a2"]
    actions = run(3, acd.AgentNoAnswer("a2", "c1"))
    assert [r.agent for r in of(actions, acd.RingAgent)] == ["a1"]  # all tried: start over


def test_caller_abandoning_while_ring_all_stops_every_phone():
    """A caller hanging up during ring_all stops all ringing phones and frees those agents."""
    run = logged_in(config(queue(strategy="ring_all", members=("a1", "a2", "a3"))),
                    "a1", "a2", "a3")
    run(1, acd.CallerJoined("report", "c1", "138"))
    actions = run(4, acd.CallerAbandoned("c1"))
    assert {s.agent for s in of(actions, acd.StopRinging)} == {"a1", "a2", "a3"}
    assert {a.status for a in run.state.agents.values()} == {"ready"}
    (abandon,) = [r for r in run.log if r.kind == "abandon"]
    assert (abandon.wait_s, abandon.position) == (3.0, 1)


def _callback_ready_to_dial():
    run = logged_in(config(queue(members=("a1",))), "a1")
    run(1, acd.CallerJoined("report", "c1", "138"))
    run(2, acd.AgentAnswered("a1", "c1"))
    run(3, acd.CallerJoined("report", "c2", "139"))
    run(4, acd.CallbackRequested("c2", "13900000002"))
    return run


def test_abandon_of_a_virtual_caller_is_illegal():
    """A caller who asked for a callback has hung up already: CallerAbandoned is refused."""
    run = _callback_ready_to_dial()
    with pytest.raises(acd.IllegalEvent, match="entry c2 is callback: CallerAbandoned"):
        run(5, acd.CallerAbandoned("c2"))


def test_cancelled_callback_leaves_the_queue():
    """CallerLeft on a kept place removes it and logs an exit with the reason."""
    run = _callback_ready_to_dial()
    run(5, acd.CallerLeft("c2", "cancelled_by_sms"))
    assert "c2" not in run.state.entries
    assert run.log[-1].kind == "exit" and run.log[-1].detail == "cancelled_by_sms"


def test_failed_callback_frees_the_agent():
    """CallbackFailed ends the kept place and returns the reserved agent to ready."""
    run = _callback_ready_to_dial()
    run(10, acd.CallEnded("a1", "c1"))
    assert run.agent("a1").status == "dialing"
    run(40, acd.CallbackFailed("c2", "busy"))
    assert run.agent("a1").status == "ready"
    assert run.state.entries == {}
    assert (run.log[-1].kind, run.log[-1].detail) == ("callback_failed", "busy")


def test_dialing_agent_cannot_pause():
    """An agent reserved for a callback being dialled cannot pause until it is answered or fails."""
    run = _callback_ready_to_dial()
    run(10, acd.CallEnded("a1", "c1"))
    with pytest.raises(acd.IllegalEvent, match="agent a1 is dialing: AgentPaused"):
        run(11, acd.AgentPaused("a1", "lunch"))


def test_callback_request_while_ringing_is_illegal():
    """A caller whose agent's phone is ringing cannot switch to a callback."""
    run = logged_in(config(queue()), "a1")
    run(1, acd.CallerJoined("report", "c1", "138"))
    with pytest.raises(acd.IllegalEvent, match="entry c1 is ringing: CallbackRequested"):
        run(2, acd.CallbackRequested("c1", "138"))


def test_overflow_loop_ends_in_voicemail():
    """Queues overflowing into each other stop at voicemail instead of looping."""
    cfg = config(queue("a", members=(), max_len=1, overflow=acd.OverflowTarget("queue", "b")),
                 queue("b", members=(), max_len=1, overflow=acd.OverflowTarget("queue", "a")))
    run = Run(cfg)
    run(1, acd.CallerJoined("a", "c1", "1"))
    run(2, acd.CallerJoined("b", "c2", "2"))
    actions = run(3, acd.CallerJoined("a", "c3", "3"))
    assert of(actions, acd.Overflow) == [acd.Overflow("c3", "queue:b", "max_len"),
                                         acd.Overflow("c3", "voicemail", "max_len")]
    assert "c3" not in run.state.entries


def test_transfer_to_logged_out_agent_is_refused():
    """A blind transfer to an agent who is not logged in raises and keeps the call bridged."""
    run = logged_in(config(queue()), "a1")
    run(1, acd.CallerJoined("report", "c1", "138"))
    run(2, acd.AgentAnswered("a1", "c1"))
    with pytest.raises(acd.IllegalEvent, match="logged out"):
        run(3, acd.TransferRequested("a1", "c1", "agent", "a2"))
    assert run.agent("a1").status == "on_call"


def test_transfer_to_a_busy_agent_waits_for_that_agent_only():
    """A call transferred to a busy agent is not offered to other free agents."""
    run = logged_in(config(queue(members=("a1", "a2", "a3"))), "a1", "a2", "a3")
    run(1, acd.CallerJoined("report", "c1", "1"))
    run(2, acd.AgentAnswered("a1", "c1"))
    run(3, acd.CallerJoined("report", "c2", "2"))
    run(4, acd.AgentAnswered("a2", "c2"))
    actions = run(5, acd.TransferRequested("a1", "c1", "agent", "a2"))
    assert of(actions, acd.RingAgent) == []  # a1 and a3 are free, but c1 waits for a2
    actions = run(9, acd.CallEnded("a2", "c2"))
    assert [r.agent for r in of(actions, acd.RingAgent)] == ["a2"]


def test_wrap_up_ends_early_on_ready_and_logs_its_length():
    """AgentReady during wrap-up ends it at once, with the wrap-up seconds logged."""
    run = logged_in(config(queue(wrap_up_s=60)), "a1")
    run(1, acd.CallerJoined("report", "c1", "138"))
    run(2, acd.AgentAnswered("a1", "c1"))
    run(12, acd.CallEnded("a1", "c1"))
    assert acd.next_deadline(run.state) == at(72)
    run(20, acd.AgentReady("a1"))
    assert run.kinds() == ["EndWrapUp"]
    assert run.log[-1].wrap_s == 8.0
    assert run.state.recent_handle_s["report"] == (18.0,)
    assert acd.next_deadline(run.state) is None


def test_tick_before_any_deadline_does_nothing():
    """A Tick with nothing due returns no actions and changes no agent or entry."""
    run = logged_in(config(queue()), "a1")
    run(1, acd.CallerJoined("report", "c1", "138"))
    before = run.state
    assert run(5, acd.Tick()) == []
    assert (run.state.agents, run.state.entries) == (before.agents, before.entries)


def test_calling_hours_predicate_gets_the_step_time():
    """The calling-hours predicate is asked with the `now` of the step, not a clock."""
    seen = []

    def hours(now):
        seen.append(now)
        return False

    run = Run(config(queue(members=("a1",)), calling_hours=hours))
    run(0, acd.AgentLoggedIn("a1"))
    run(1, acd.CallerJoined("report", "c1", "138"))
    run(2, acd.AgentAnswered("a1", "c1"))
    run(3, acd.CallerJoined("report", "c2", "139"))
    run(4, acd.CallbackRequested("c2", "139"))
    run(7, acd.CallEnded("a1", "c1"))
    assert seen == [at(7)]
    assert acd.next_deadline(run.state) == at(7 + acd.CALLBACK_RECHECK_S)


def test_new_state_has_everyone_logged_out():
    """A fresh state has every configured agent logged out since the start, and no callers."""
    state = acd.new_state(config(queue()), T0)
    assert {a.status for a in state.agents.values()} == {"logged_out"}
    assert state.entries == {} and acd.next_deadline(state) is None
