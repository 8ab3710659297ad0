"""The callback driver (calls/callback.py) steps the call table and refuses what it cannot perform."""

from __future__ import annotations

from dataclasses import replace

from callcenter.calls import model as m
from callcenter.calls.callback import CallbackCall


class _Router:
    def __init__(self):
        self.callbacks = {}


def _callback(phase: str, **fields) -> CallbackCall:
    cb = CallbackCall(_Router(), "c1", "13800000041", "a1", "general")
    cb.state = replace(cb.state, phase=phase, **fields)
    return cb


def test_listen_in_on_a_callback_is_refused_and_changes_nothing():
    """A listen-in row exists for any answered call, but a callback cannot dial a monitor: refused, phase kept."""
    cb = _callback("callback_bridged", answered=True)
    assert cb.handle(m.ListenInRequested("2001")) is False
    assert cb.state.phase == "callback_bridged"


def test_the_acd_bridge_is_taken_and_a_ring_request_is_not():
    """The ACD's Bridge (QueueBridged) has a row in every callback phase; a RingAgent (AgentRingRequested) has none."""
    cb = _callback("callback_dialing")
    assert cb.deliver(m.QueueBridged("a1")) is True
    assert cb.deliver(m.AgentRingRequested("a1", "1001")) is False
    assert cb.state.phase == "callback_dialing"
