"""The engine's per-step cache (service order, next deadline) never changes a decision.

A state made by `step` carries a private cache; a copy made with `dataclasses.replace` has
none and is rebuilt from scratch. Both must step alike, and `next_deadline` must agree.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest

from callcenter import acd
from callcenter.acd import engine

from .helpers import T0, at
from .test_properties import AGENTS, QUEUES, _candidates


def _fresh(state: acd.AcdState) -> acd.AcdState:
    copy = dataclasses.replace(state)
    assert engine._CACHE not in copy.__dict__
    return copy


def _check_order(state: acd.AcdState) -> None:
    """The cached service order is what sorting the entries gives."""
    cache = engine._cache_of(state)
    everyone = [e.call for e in sorted(state.entries.values(), key=lambda e: e.order_key)]
    assert list(cache.order.get(None, ((), ()))[1]) == everyone
    for name in state.config.queues:
        calls = list(cache.order.get(name, ((), ()))[1])
        assert calls == [e.call for e in state.queue_entries(name)]
        assert list(cache.order.get(name, ((), ()))[0]) == \
            [state.entries[c].order_key for c in calls]
        assert cache.skilled.get(name, 0) == sum(
            1 for c in calls if state.entries[c].skill is not None)


def _step_both(state, event, now):
    """Step the cached state and a cache-less copy; both must give the same outcome."""
    try:
        new, actions = acd.step(state, event, now)
    except acd.IllegalEvent as exc:
        with pytest.raises(acd.IllegalEvent, match=str(exc).split(":")[0]):
            acd.step(_fresh(state), event, now)
        return None, None
    new2, actions2 = acd.step(_fresh(state), event, now)
    assert actions == actions2
    assert new == new2
    assert acd.next_deadline(new) == acd.next_deadline(_fresh(new)) == acd.next_deadline(new2)
    _check_order(new)
    return new, actions


def _office_hours(now: dt.datetime) -> bool:
    return not (now.hour == 9 and now.minute >= 20)  # no callbacks placed 09:20-10:00


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("hours", [acd.always_callable, _office_hours], ids=["always", "hours"])
def test_cached_and_fresh_states_step_alike(seed, hours):
    rng = random.Random(1000 + seed)
    state = acd.new_state(acd.AcdConfig.build(QUEUES, AGENTS, hours), T0)
    now_s, next_call = 0.0, 1
    for _ in range(250):
        now_s += rng.choice([0, 1, 2, 5, 15, 40])
        deadline = acd.next_deadline(state)
        while deadline is not None and deadline <= at(now_s):
            state, _ = _step_both(state, acd.Tick(), max(deadline, state.now))
            deadline = acd.next_deadline(state)
        event = rng.choice(_candidates(rng, state, next_call))
        if isinstance(event, acd.CallerJoined):
            next_call += 1
            if rng.random() < 0.2:
                event = dataclasses.replace(event, skill="report")
        new, _ = _step_both(state, event, at(now_s))
        if new is not None:
            state = new


def _server(agents: int = 50) -> acd.AcdConfig:
    ags = [acd.AgentConfig(f"a{i}", f"{1000 + i}") for i in range(agents)]
    members = {a.id: 0 for a in ags}
    queues = [acd.QueueConfig(name, "longest_idle", members, max_wait_s=300,
                              join_empty=False, leave_when_empty=True, wrap_up_s=30,
                              ring_timeout_s=20, announce_interval_s=30,
                              callback_offer_after_s=30)
              for name in ("report", "consult", "general")]
    return acd.AcdConfig.build(queues, ags)


def test_long_queue_announcements_match_the_public_estimate():
    """With 150 callers waiting, every announced ETA is `estimate_wait_s` of the state."""
    state = acd.new_state(_server(), T0)
    t = 0.0
    for i in range(50):
        state, _ = acd.step(state, acd.AgentLoggedIn(f"a{i}"), at(t))
    announced = 0
    for n in range(1, 201):
        t += 0.5
        queue = ("report", "report", "consult", "general")[n % 4]
        joined = acd.CallerJoined(queue, f"c{n}", "138", priority=1 if n % 7 == 0 else 0)
        state, actions = _step_both(state, joined, at(t))
        for a in actions:
            if isinstance(a, acd.RingAgent):
                state, _ = _step_both(state, acd.AgentAnswered(a.agent, a.call), at(t))
            if isinstance(a, acd.AnnouncePosition):
                q = state.entries[a.call].queue
                assert a.position == state.position(a.call)
                assert a.eta_s == acd.estimate_wait_s(state, q, a.position)
                announced += 1
    assert sum(1 for e in state.entries.values() if e.status == "waiting") == 150
    # half a minute on: ends, wrap-ups, ticks (announcements, callback offers)
    for k in range(120):
        t += 0.5
        deadline = acd.next_deadline(state)
        while deadline is not None and deadline <= at(t):
            state, actions = _step_both(state, acd.Tick(), max(deadline, state.now))
            for a in actions:
                if isinstance(a, acd.AnnouncePosition):
                    q = state.entries[a.call].queue
                    assert a.eta_s == acd.estimate_wait_s(state, q, a.position)
                    announced += 1
            deadline = acd.next_deadline(state)
        busy = sorted((a for a in state.agents.values() if a.status == "on_call"),
                      key=lambda a: (a.since, a.id))
        if k % 3 == 0 and busy:
            state, _ = _step_both(state, acd.CallEnded(busy[0].id, busy[0].call.call), at(t))
        for a in [a for a in state.agents.values() if a.status == "ringing"]:
            state, _ = _step_both(state, acd.AgentAnswered(a.id, a.call.call), at(t))
    assert announced > 300


@pytest.mark.parametrize("seconds", [0, 1, 15, 30, 300, 0.1, 0.1234564, 0.1234567, 2.5e-7,
                                     1e-9, 12.3456785, 86400.000001])
def test_at_least_decides_as_total_seconds(seconds):
    d = engine._at_least(seconds)
    one = dt.timedelta(microseconds=1)
    assert d.total_seconds() >= seconds
    assert d == dt.timedelta(0) or (d - one).total_seconds() < seconds


def test_at_least_never_for_endless_settings():
    assert engine._at_least(float("inf")) == dt.timedelta.max
    assert engine._at_least(float("nan")) == dt.timedelta.max


def test_announcement_deadline_is_the_earliest_across_positions():
    """Later-joined urgent callers stand ahead: the deadline is the oldest announcement's."""
    cfg = acd.AcdConfig.build(
        [acd.QueueConfig("q", "longest_idle", {"a1": 0}, announce_interval_s=30)],
        [acd.AgentConfig("a1", "8001")])
    state = acd.new_state(cfg, T0)
    for t, call, priority in ((0, "cA", 0), (10, "cB", 1), (20, "cC", 2)):
        state, _ = _step_both(state, acd.CallerJoined("q", call, "138", priority=priority), at(t))
    assert [e.call for e in state.queue_entries("q")] == ["cC", "cB", "cA"]
    assert acd.next_deadline(state) == at(30)  # cA's (announced at 0 as position 1)
    state, actions = _step_both(state, acd.Tick(), at(30))
    assert [(a.call, a.position) for a in actions if isinstance(a, acd.AnnouncePosition)] == \
        [("cA", 3)]
    assert acd.next_deadline(state) == at(40)  # cB's


def test_leave_when_empty_for_a_skill_nobody_staffed_has():
    """A caller asking for a skill leaves once its last staffed holder pauses, even though
    other members are still staffed."""
    cfg = acd.AcdConfig.build(
        [acd.QueueConfig("q", "longest_idle", {"a1": 0, "a2": 0}, leave_when_empty=True)],
        [acd.AgentConfig("a1", "8001", {"law": 1}), acd.AgentConfig("a2", "8002")])
    state = acd.new_state(cfg, T0)
    for t, event in enumerate([acd.AgentLoggedIn("a1"), acd.AgentLoggedIn("a2"),
                               acd.CallerJoined("q", "c1", "138"),
                               acd.CallerJoined("q", "c2", "139", skill="law"),
                               acd.CallerJoined("q", "c3", "137")]):
        state, _ = _step_both(state, event, at(t))
    # c1 rings a1 (longest idle), c2 waits for a1 (the only "law" agent), c3 rings a2
    assert state.entries["c2"].status == "waiting"
    state, actions = _step_both(state, acd.AgentPaused("a1", "break"), at(10))
    assert [a for a in actions if isinstance(a, acd.Overflow)] == \
        [acd.Overflow("c2", "voicemail", "leave_empty")]
    assert state.entries["c1"].status == "waiting" and "c2" not in state.entries
