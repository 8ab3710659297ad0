"""Tests for callcenter.sip.transaction: the tables, the pure step and timer handling."""

import pytest

from callcenter.sip import transaction as t
from callcenter.sip.transaction import (
    IllegalTransition, Retransmit, SendResponse, Timing, Transaction, fire, start, step,
    step_call, to_dot,
)

TIMING = Timing(0.5, 4.0, 5.0)


def test_every_row_targets_a_known_state():
    """Each table's targets are states that appear as sources (or terminated/ended)."""
    for kind, table in t.TABLES.items():
        sources = {s for s, _ in table} | {"terminated"}
        assert {row.target for row in table.values()} <= sources, kind
    for role, table in t.CALL_TABLES.items():
        sources = {s for s, _ in table} | {"ended"}
        assert {target for target, _ in table.values()} <= sources, role


def test_every_call_action_is_implemented_by_the_ua():
    """Every action name in the call tables has a _do_<name> method on UserAgent."""
    from callcenter.sip.ua import UserAgent
    names = {a for table in t.CALL_TABLES.values() for _, acts in table.values() for a in acts}
    missing = [n for n in names if not hasattr(UserAgent, f"_do_{n}")]
    assert missing == []


def test_step_and_illegal_transition():
    """step returns the row; an event the table lacks raises IllegalTransition."""
    assert step("nist", "trying", "final_sent")[0] == "completed"
    with pytest.raises(IllegalTransition, match="timer_J"):
        step("ist", "proceeding", "timer_J")
    assert step_call("uas", "offered", "answer") == ("answered", ("send_success",))
    with pytest.raises(IllegalTransition):
        step_call("uas", "ended", "answer")


def test_ist_timer_g_doubles_to_t2():
    """Timer G doubles from T1 and is capped at T2; ACK cancels it and starts Timer I."""
    tx = Transaction("ist", "k", None, ("h", 1))
    actions = fire(tx, "failure_sent", 0.0, TIMING)
    assert actions == (SendResponse(),)
    assert tx.timers == {"G": 0.5, "H": 32.0}
    intervals = []
    now = 0.0
    for _ in range(5):
        now = tx.timers["G"]
        assert fire(tx, "timer_G", now, TIMING) == (Retransmit(),)
        intervals.append(tx.intervals["G"])
    assert intervals == [1.0, 2.0, 4.0, 4.0, 4.0]
    fire(tx, "ack_received", now, TIMING)
    assert tx.state == "confirmed" and set(tx.timers) == {"I"}
    fire(tx, "timer_I", now + 5, TIMING)
    assert tx.terminated and tx.timers == {}


def test_nict_timers_e_and_f():
    """A started NICT arms E at T1 and F at 64*T1; F fires a timeout and terminates."""
    tx = Transaction("nict", "k", None, ("h", 1))
    start(tx, 10.0, TIMING)
    assert tx.timers == {"E": 10.5, "F": 42.0}
    actions = fire(tx, "timer_F", 42.0, TIMING)
    assert actions == (t.ReportTimeout(),) and tx.terminated


def test_nict_proceeding_retransmits_at_t2():
    """After a provisional, Timer E runs at T2 (§17.1.2.2)."""
    tx = Transaction("nict", "k", None, ("h", 1))
    start(tx, 0.0, TIMING)
    fire(tx, "provisional_received", 0.1, TIMING)
    fire(tx, "timer_E", 0.5, TIMING)
    assert tx.timers["E"] == pytest.approx(4.5)


def test_dot_output_lists_rows():
    """to_dot draws one edge per table row."""
    dot = to_dot("ist")
    assert dot.count("->") == len(t.TABLES["ist"])
    assert '"proceeding" -> "accepted"' in dot
    assert to_dot("uas").count("->") == len(t.CALL_TABLES["uas"])
