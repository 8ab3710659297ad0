"""Which agent's phone rings first for a scheduled callback (预约回拨): its own agent's, or —
for one without an agent (a kept place that expired before any try) — the agent ready longest."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from callcenter import calls
from callcenter.calls import router as calls_router
from callcenter.calls.acd_driver import AcdDriver
from callcenter.acd.model import Agent
from callcenter.dialplan import DialPlan

T0 = dt.datetime(2026, 12, 7, 9, 0)


class FakeCallback:
    """Stands in for CallbackCall: records which extension would ring."""

    started: list[tuple[str, str | None, str]] = []

    def __init__(self, router, callback_id, number, agent_id, queue, on_outcome=None):
        self.callback_id, self.agent_id = callback_id, agent_id

    def start(self, extension: str, ring_timeout_s: float) -> bool:
        FakeCallback.started.append((self.callback_id, self.agent_id, extension))
        return True


def _router(agents: list[Agent], registered: set[str]):
    acd = SimpleNamespace(state=SimpleNamespace(agents={a.id: a for a in agents}))
    acd.agent_extension = lambda agent_id: AcdDriver.agent_extension(acd, agent_id)
    acd.longest_ready = lambda has_phone: AcdDriver.longest_ready(acd, has_phone)
    router = SimpleNamespace(acd=acd,
                             bindings_for=lambda ext: ["binding"] if ext in registered else [],
                             dialplan=DialPlan())
    router._may_dial = lambda number: calls.CallRouter._may_dial(router, number)
    return router


def test_a_callback_abroad_rings_nobody(monkeypatch):
    """The [dialplan] refuses an international number before any agent's phone rings."""
    monkeypatch.setattr(calls_router, "CallbackCall", FakeCallback)
    FakeCallback.started = []
    router = _router([Agent(id="agent1", extension="1001", skills={}, status="ready", since=T0)], {"1001"})
    assert not calls.CallRouter.place_agent_callback(router, "cb-9", "0044207946000", "agent1", on_outcome=print)
    assert FakeCallback.started == []


def test_a_callback_without_agent_rings_the_agent_ready_longest(monkeypatch):
    """Ready agents with a registered phone are candidates; the one ready longest rings."""
    monkeypatch.setattr(calls_router, "CallbackCall", FakeCallback)
    FakeCallback.started = []
    agents = [
        Agent(id="agent1", extension="1001", skills={}, status="ready", since=T0 + dt.timedelta(minutes=5)),
        Agent(id="agent2", extension="1002", skills={}, status="ready", since=T0 + dt.timedelta(minutes=1)),
        Agent(id="agent3", extension="1003", skills={}, status="on_call", since=T0),
        Agent(id="agent4", extension="1004", skills={}, status="ready", since=T0),  # ready longest, no phone
    ]
    router = _router(agents, registered={"1001", "1002", "1003"})
    assert calls.CallRouter.place_agent_callback(router, "cb-1", "13800000000", None, on_outcome=print)
    assert FakeCallback.started == [("cb-1", "agent2", "1002")]


def test_own_agent_first_and_nobody_ready_fails(monkeypatch):
    """A callback with its agent rings that agent; without one and nobody ready, it is not placed."""
    monkeypatch.setattr(calls_router, "CallbackCall", FakeCallback)
    FakeCallback.started = []
    agents = [Agent(id="agent1", extension="1001", skills={}, status="paused", since=T0)]
    router = _router(agents, registered={"1001"})
    assert calls.CallRouter.place_agent_callback(router, "cb-2", "13800000000", "agent1", on_outcome=print)
    assert FakeCallback.started == [("cb-2", "agent1", "1001")]
    assert not calls.CallRouter.place_agent_callback(router, "cb-3", "13800000000", None, on_outcome=print)
    assert FakeCallback.started == [("cb-2", "agent1", "1001")]
