"""Property-style checks: random but legal event streams never break the ACD's invariants."""

from __future__ import annotations

import functools
import random

import pytest

from callcenter import acd

from .helpers import T0, at

SEEDS = 10
AGENTS = [acd.AgentConfig(f"a{i}", f"800{i}", {"report": 1 + i % 3}) for i in range(1, 6)]
QUEUES = [
    acd.QueueConfig("report", "longest_idle", {"a1": 0, "a2": 0, "a3": 1}, wrap_up_s=20,
                    max_wait_s=300, max_len=4, overflow=acd.OverflowTarget("queue", "general"),
                    announce_interval_s=30, callback_offer_after_s=60, callback_expiry_s=900,
                    ring_timeout_s=15),
    acd.QueueConfig("general", "ring_all", {"a3": 0, "a4": 0, "a5": 1}, max_wait_s=600,
                    ring_timeout_s=20, pause_on_no_answer=False, callback_offer_after_s=90),
    acd.QueueConfig("expert", "skills_penalty", {"a1": 1, "a4": 0, "a5": 0}, skill="report",
                    join_empty=False, leave_when_empty=True, wrap_up_s=10),
    acd.QueueConfig("rr", "round_robin", {"a2": 0, "a5": 0, "a1": 0}, max_len=2),
    acd.QueueConfig("fewest", "fewest_calls", {"a4": 0, "a2": 0}),
]


def _candidates(rng: random.Random, state: acd.AcdState, next_call: int) -> list[acd.Event]:
    """Events a real driver could send now (mostly legal ones)."""
    events: list[acd.Event] = []
    for a in state.agents.values():
        if a.status == "logged_out":
            events.append(acd.AgentLoggedIn(a.id))
        elif a.status == "ready":
            events += [acd.AgentPaused(a.id, "break"), acd.AgentLoggedOut(a.id),
                       acd.AgentReady(a.id)]  # the last is illegal: already ready
        elif a.status == "paused":
            events += [acd.AgentReady(a.id)] * 3
        elif a.status == "ringing":
            events += [acd.AgentAnswered(a.id, a.call.call)] * 3 + [
                acd.AgentNoAnswer(a.id, a.call.call), acd.AgentPaused(a.id, "busy")]
        elif a.status == "on_call":
            events += [acd.CallEnded(a.id, a.call.call)] * 2 + [
                acd.TransferRequested(a.id, a.call.call, "queue", rng.choice(QUEUES).name),
                acd.TransferRequested(a.id, a.call.call, "number", "12345")]
        elif a.status == "wrap_up":
            events.append(acd.WrapUpDone(a.id))
    for e in state.entries.values():
        if e.status in ("waiting", "ringing"):
            events += [acd.CallerAbandoned(e.call), acd.CallerLeft(e.call, "voicemail_key")]
        if e.status == "waiting":
            events.append(acd.CallbackRequested(e.call, e.caller))
        if e.status == "dialing":
            events += [acd.CallbackAnswered(e.call), acd.CallbackFailed(e.call, "no_answer")]
    q = rng.choice(QUEUES)
    events += [acd.CallerJoined(q.name, f"c{next_call}", f"1380000{next_call:04d}",
                                priority=rng.choice([0, 0, 0, 10]))] * 3
    return events


def _check_state(state: acd.AcdState) -> None:
    for entry in state.entries.values():
        for agent_id in entry.ringing:
            agent = state.agents[agent_id]
            assert agent.status in ("ringing", "dialing") and agent.call.call == entry.call
        if entry.status in ("ringing", "dialing"):
            assert entry.ringing
        else:
            assert not entry.ringing
        if state.config.queues[entry.queue].strategy != "ring_all" or entry.pinned_agent:
            assert len(entry.ringing) <= 1
    for agent in state.agents.values():
        if agent.status in ("ringing", "dialing"):
            assert agent.id in state.entries[agent.call.call].ringing
        if agent.status == "on_call":
            assert agent.call.call not in state.entries
        if agent.status in ("ready", "paused", "logged_out"):
            assert agent.call is None
        assert (agent.status == "paused") == (agent.pause_reason is not None)
    on_call = [a.call.call for a in state.agents.values() if a.status == "on_call"]
    assert len(on_call) == len(set(on_call)), "a caller bridged to two agents"
    for name in state.config.queues:
        positions = [state.position(e.call) for e in state.queue_entries(name)]
        assert positions == list(range(1, len(positions) + 1))


class _Phones:
    """What the driver sees: which call each agent's phone rings for, which calls are bridged."""

    def __init__(self):
        self.ringing: dict[str, str] = {}
        self.bridged: set[str] = set()

    def event(self, event: acd.Event) -> None:
        if isinstance(event, (acd.AgentAnswered, acd.AgentNoAnswer)):
            assert self.ringing.pop(event.agent) == event.call
        elif isinstance(event, acd.CallEnded):
            self.bridged.discard(event.call)

    def actions(self, actions: list[acd.Action]) -> None:
        for a in actions:
            if isinstance(a, acd.RingAgent):
                assert a.agent not in self.ringing, f"{a.agent} rung for two calls"
                self.ringing[a.agent] = a.call
            elif isinstance(a, acd.StopRinging):
                assert self.ringing.pop(a.agent) == a.call
            elif isinstance(a, acd.Bridge):
                assert a.call not in self.bridged, f"{a.call} bridged twice"
                assert a.agent not in self.ringing
                self.bridged.add(a.call)
            elif isinstance(a, acd.Unbridge):
                self.bridged.remove(a.call)


@functools.cache
def _drive(seed: int, steps: int = 300) -> dict[str, int]:
    rng = random.Random(seed)
    state = acd.new_state(acd.AcdConfig.build(QUEUES, AGENTS), T0)
    now_s, next_call, phones, seen = 0.0, 1, _Phones(), {}
    for _ in range(steps):
        now_s += rng.choice([0, 1, 2, 5, 15, 40])
        deadline = acd.next_deadline(state)
        while deadline is not None and deadline <= at(now_s):
            tick_at = max(deadline, state.now)
            state, actions = acd.step(state, acd.Tick(), tick_at)
            phones.actions(actions)
            for a in actions:
                seen[type(a).__name__] = seen.get(type(a).__name__, 0) + 1
            _check_state(state)
            deadline = acd.next_deadline(state)
            assert deadline is None or deadline > tick_at, "deadline not consumed by Tick"
        event = rng.choice(_candidates(rng, state, next_call))
        if isinstance(event, acd.CallerJoined):
            next_call += 1
        before = state
        try:
            state, actions = acd.step(state, event, at(now_s))
        except acd.IllegalEvent:
            assert state is before
            seen["illegal"] = seen.get("illegal", 0) + 1
            continue
        phones.event(event)
        phones.actions(actions)
        _check_state(state)
        for a in actions:
            seen[type(a).__name__] = seen.get(type(a).__name__, 0) + 1
            if isinstance(a, acd.RingAgent):
                agent = state.agents[a.agent]
                assert (agent.status, agent.call.call) == ("ringing", a.call)
        assert set(phones.ringing.items()) == {
            (a.id, a.call.call) for a in state.agents.values() if a.status == "ringing"}
    return seen


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_streams_keep_invariants(seed):
    """No caller is bridged twice, no agent rings for two calls, states stay consistent."""
    _drive(seed)


def test_random_streams_reach_every_kind_of_action():
    """The random driver really exercises callbacks, overflow, transfers and no-answers."""
    seen: dict[str, int] = {}
    for seed in range(SEEDS):
        for k, v in _drive(seed).items():
            seen[k] = seen.get(k, 0) + v
    wanted = {"RingAgent", "StopRinging", "Bridge", "Unbridge", "TransferToNumber",
              "AnnouncePosition", "OfferCallback", "Overflow", "PlaceCallback", "StartWrapUp",
              "EndWrapUp", "QueueEventLogged", "illegal"}
    assert wanted <= set(seen), wanted - set(seen)
