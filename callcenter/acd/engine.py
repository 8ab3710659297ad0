"""The pure ACD: `step(state, event, now) -> (state, actions)` and `next_deadline(state)`.

This module applies events to agents and queue entries through the transition tables in
`callcenter.acd.tables`, then, after every event, lets callers leave empty queues, offers
waiting callers to free agents (strategies) and announces positions. Timeouts (ring,
wrap-up, max wait, callback offer and expiry, announcements) fire only on `Tick`; the
driver arms one timer at `next_deadline(state)` (which may already be due: tick at once).

Dispatch order: across all queues, callers are served by priority (higher first), then
join order; each free agent is offered to at most one caller; a caller who asked for a
callback keeps their place and is dialled when their turn comes (within calling hours),
with the chosen agent reserved (`dialing`) meanwhile.

Cost: a step is O(agents + callers) with a small constant, whatever the queue length. A
state made by `step` carries a private per-step cache (`_Cache`, not a dataclass field,
so `dataclasses.replace` and `==` ignore it): the entries in service order, per queue and
across queues, updated by bisection as callers join and leave instead of re-sorted, and
the state's next deadline, computed in the same pass that announces positions (staffed
count and recent AHT once per queue, not per caller). `next_deadline` of such a state is
O(1). A state made any other way (`new_state`, by hand) gets the cache built on first use.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import replace
from types import MappingProxyType

from collections.abc import Callable

from callcenter.acd import actions as act
from callcenter.acd import events as ev
from callcenter.acd.eta import RECENT_HANDLE_SAMPLES, STAFFED, wait_s
from callcenter.acd.model import (
    AcdState,
    Agent,
    CallInfo,
    IllegalEvent,
    QueueConfig,
    QueueEntry,
)
from callcenter.acd.strategies import choose_agents
from callcenter.acd.tables import GONE, lookup

__all__ = ["step", "next_deadline", "CALLBACK_RECHECK_S"]

# A callback whose turn came outside calling hours is looked at again this often.
CALLBACK_RECHECK_S = 60

_FREE_AFTER = ("ready", "paused", "logged_out")


def _secs(later: _dt.datetime, earlier: _dt.datetime) -> float:
    return (later - earlier).total_seconds()


_AT_LEAST: dict[float, _dt.timedelta] = {}
_NEVER_S = _dt.timedelta.max.total_seconds() - 1


def _at_least(seconds: float) -> _dt.timedelta:
    """The shortest duration `d` with `d.total_seconds() >= seconds`: comparing timedeltas
    with it decides exactly as `_secs(now, then) >= seconds`, without a float per caller."""
    d = _AT_LEAST.get(seconds)
    if d is None and not seconds <= _NEVER_S:  # inf, nan: no time is long enough
        return _dt.timedelta.max
    if d is None:
        us = math.ceil(seconds * 1_000_000)
        while (us - 1) / 1_000_000 >= seconds:
            us -= 1
        while us / 1_000_000 < seconds:
            us += 1
        d = _dt.timedelta(microseconds=us)
        if len(_AT_LEAST) < 256:  # queue settings: a handful of distinct values
            _AT_LEAST[seconds] = d
    return d


def _bisect(keys: list, key, right: bool) -> int:
    """Where `key` goes in the sorted `keys`: before equal keys, or after them (`right`)."""
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < key or (right and keys[mid] == key):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _evolve(obj, **changes):
    """`dataclasses.replace` for agents and entries (no `__post_init__` to run, field names
    known to the engine), without its per-field overhead."""
    if type(obj) not in _PLAIN:
        return replace(obj, **changes)
    new = object.__new__(type(obj))
    fields = new.__dict__
    fields.update(obj.__dict__)
    fields.update(changes)
    return new


_PLAIN = frozenset(cls for cls in (Agent, QueueEntry) if not hasattr(cls, "__post_init__"))

# Entries in service order: sorted order keys (-priority, seq) and call ids side by side.
_NO_ENTRIES: tuple[tuple, tuple] = ((), ())
_CACHE = "_acd_cache"  # the attribute of an AcdState that holds its _Cache


class _Cache:
    """What `step` learnt about the state it returns (read-only once attached to it).

    `order[queue]` and `order[None]` (every queue): (order keys, call ids) in service order.
    `skilled[queue]`: how many of its entries ask for a skill. `deadline`: the earliest
    deadline except the callback recheck; `callbacks`: some entry is a kept-place callback.
    `firsts[queue]`: the earliest ring_until, callback_expires_at, joined_at of a waiting
    caller, and joined_at of a waiting caller not offered a callback yet (None: no such
    entry), so that a `Tick` with nothing due need not look at every caller.

    The mins (and `deadline` = min of base + setting rather than of each entry's sum) are
    exact when the times share one tzinfo or have fixed offsets, as the driver's do.
    """

    __slots__ = ("order", "skilled", "deadline", "callbacks", "firsts")

    def __init__(self, order, skilled, scan):
        self.order = order
        self.skilled = skilled
        self.deadline, self.callbacks, self.firsts = scan


def _build_order(entries) -> tuple[dict, dict]:
    ordered = sorted(entries.values(), key=lambda e: e.order_key)  # stable, as queue_entries
    order = {None: ([e.order_key for e in ordered], [e.call for e in ordered])}
    skilled: dict[str, int] = {}
    for e in ordered:
        keys, calls = order.setdefault(e.queue, ([], []))
        keys.append(e.order_key)
        calls.append(e.call)
        if e.skill is not None:
            skilled[e.queue] = skilled.get(e.queue, 0) + 1
    return order, skilled


def _cache_of(state: AcdState) -> _Cache:
    cache = state.__dict__.get(_CACHE)
    if cache is None:
        order, skilled = _build_order(state.entries)
        cache = _Cache(order, skilled, _scan(state.config, state.agents, state.entries,
                                             state.recent_handle_s, order, state.now, None))
        object.__setattr__(state, _CACHE, cache)
    return cache


def _scan(cfg, agents, entries, recent, order, now, announce) -> tuple:
    """One pass over every queue in service order, then the agents: the earliest deadline
    (but the callback recheck), whether some entry is a kept-place callback, and the
    earliest times per queue (`_Cache.firsts`).

    With `announce` (`step`), waiting callers whose (position, ETA) changed and whose
    announcement interval has passed are announced first (`announce(entry, position, eta)`
    returns the updated entry); `next_deadline` then sees the state after that.
    """
    earliest = None
    callbacks = False
    firsts = {}
    at_work = None  # ids of the staffed agents, for every queue's count
    for name, queue in cfg.queues.items():
        calls = order.get(name, _NO_ENTRIES)[1]
        if not calls:
            continue
        interval = queue.announce_interval_s
        if interval is not None:
            if at_work is None:
                at_work = {k for k, a in agents.items() if a.status in STAFFED}
            staffed = len(at_work.intersection(queue.members))
            samples = recent.get(name, ())
            aht = sum(samples) / len(samples) if samples else float(queue.default_aht_s)
            due_after = _at_least(interval) if announce is not None else None
        max_wait = queue.max_wait_s
        offer_after = queue.callback_offer_after_s
        track_join = max_wait is not None
        track_offer = offer_after is not None
        ring = expiry = joined = offer = said_at = None
        for position, call in enumerate(calls, 1):
            entry = entries[call]
            status = entry.status
            if status == "waiting":
                if interval is not None:
                    said = entry.announced
                    if said is None or said[0] != position \
                            or said[1] != wait_s(position, aht, staffed):
                        at = entry.announced_at
                        if at is None:  # never announced: due at once
                            if due_after is not None:
                                entry = announce(entry, position, wait_s(position, aht, staffed))
                        elif due_after is not None and now - at >= due_after:
                            entry = announce(entry, position, wait_s(position, aht, staffed))
                        elif said_at is None or at < said_at:
                            said_at = at
                joined_at = entry.joined_at
                if track_join and (joined is None or joined_at < joined):
                    joined = joined_at
                if track_offer and not entry.callback_offered \
                        and (offer is None or joined_at < offer):
                    offer = joined_at
            elif status == "ringing":
                if ring is None or entry.ring_until < ring:
                    ring = entry.ring_until
            elif status == "callback":
                callbacks = True
                if expiry is None or entry.callback_expires_at < expiry:
                    expiry = entry.callback_expires_at
        firsts[name] = (ring, expiry, joined, offer)
        for deadline in (
                ring, expiry,
                None if joined is None else joined + _dt.timedelta(seconds=max_wait),
                None if offer is None else offer + _dt.timedelta(seconds=offer_after),
                None if said_at is None else said_at + _dt.timedelta(seconds=interval)):
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
    for agent in agents.values():
        if agent.status == "wrap_up" and (earliest is None or agent.wrap_up_until < earliest):
            earliest = agent.wrap_up_until
    return earliest, callbacks, firsts


def _copy(mapping) -> dict:
    # A read-only view's `copy()` copies the dict behind it at C speed; `dict(view)` would
    # go key by key.
    copy = mapping.copy() if isinstance(mapping, MappingProxyType) else None
    return copy if type(copy) is dict else dict(mapping)


class _Run:
    """One step's working copy: plain dicts in, a new frozen state out."""

    def __init__(self, state: AcdState, now: _dt.datetime):
        self.cfg = state.config
        self.agents = _copy(state.agents)
        self.entries = _copy(state.entries)
        self.rr_last = _copy(state.rr_last)
        self.recent = _copy(state.recent_handle_s)
        self.seq = state.seq
        self.now = now
        self.actions: list[act.Action] = []
        cache = state.__dict__.get(_CACHE)
        if cache is None:
            self.order, self.skilled = _build_order(state.entries)
            self.owned = set(self.order)
            self.firsts = None
        else:  # copy on write: the lists are shared with `state` until changed
            self.order = dict(cache.order)
            self.skilled = dict(cache.skilled)
            self.owned = set()
            self.firsts = cache.firsts  # of the entries as they were before this step

    def freeze(self, scan: tuple) -> AcdState:
        # The dicts are this run's own copies and the run ends here: no need to copy again.
        state = AcdState(config=self.cfg, agents=MappingProxyType(self.agents),
                         entries=MappingProxyType(self.entries),
                         rr_last=MappingProxyType(self.rr_last),
                         recent_handle_s=MappingProxyType(self.recent), seq=self.seq,
                         now=self.now)
        object.__setattr__(state, _CACHE, _Cache(self.order, self.skilled, scan))
        return state

    # --- entries in service order ----------------------------------------------------------

    def _lists(self, queue: str | None) -> tuple[list, list]:
        if queue in self.owned:
            return self.order[queue]
        keys, calls = self.order.get(queue, _NO_ENTRIES)
        lists = self.order[queue] = (list(keys), list(calls))
        self.owned.add(queue)
        return lists

    def add_entry(self, entry: QueueEntry) -> None:
        self.entries[entry.call] = entry
        key = entry.order_key
        for queue in (None, entry.queue):
            keys, calls = self._lists(queue)
            i = _bisect(keys, key, True)  # after equal keys, as a stable sort would
            keys.insert(i, key)
            calls.insert(i, entry.call)
        if entry.skill is not None:
            self.skilled[entry.queue] = self.skilled.get(entry.queue, 0) + 1

    def remove_entry(self, call: str) -> None:
        entry = self.entries.pop(call)
        key = entry.order_key
        for queue in (None, entry.queue):
            keys, calls = self._lists(queue)
            i = _bisect(keys, key, False)
            while calls[i] != call:
                i += 1
            del keys[i], calls[i]
        if entry.skill is not None:
            self.skilled[entry.queue] -= 1

    def in_order(self, queue: str | None = None) -> list[str]:
        """Call ids in service order: of one queue, or across queues (None)."""
        return self.order.get(queue, _NO_ENTRIES)[1]

    def emit(self, *actions: act.Action) -> None:
        self.actions.extend(actions)

    def log(self, kind: str, queue: str, call: str, **fields) -> None:
        self.emit(act.QueueEventLogged(at=self.now, kind=kind, queue=queue, call=call, **fields))

    # --- lookups that turn bad references into clear errors ---------------------------

    def agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise IllegalEvent(f"unknown agent {agent_id!r}") from None

    def entry(self, call: str) -> QueueEntry:
        try:
            return self.entries[call]
        except KeyError:
            raise IllegalEvent(f"call {call!r} is not in any queue") from None

    def agent_with_call(self, agent_id: str, call: str) -> Agent:
        agent = self.agent(agent_id)
        if agent.call is None or agent.call.call != call:
            current = agent.call.call if agent.call else None
            raise IllegalEvent(f"agent {agent_id} is {agent.status} with call {current!r}, "
                               f"not {call!r}")
        return agent

    def position(self, entry: QueueEntry) -> int:
        return 1 + _bisect(self.order.get(entry.queue, _NO_ENTRIES)[0], entry.order_key, False)

    # --- transitions ---------------------------------------------------------------------

    def move_agent(self, agent_id: str, trigger: str, **changes) -> Agent:
        agent = self.agents[agent_id]
        queue = self.cfg.queues[agent.call.queue] if agent.call else None
        guards = {
            "wrap_up_s > 0": bool(queue and queue.wrap_up_s > 0),
            "wrap_up_s = 0": not (queue and queue.wrap_up_s > 0),
            "pause_on_no_answer": bool(queue and queue.pause_on_no_answer),
            "not pause_on_no_answer": not (queue and queue.pause_on_no_answer),
        }
        row = lookup("agent", agent_id, agent.status, trigger, guards)
        if row.target in _FREE_AFTER:
            changes.setdefault("call", None)
        if row.target != "paused":
            changes["pause_reason"] = None
        if row.target != "wrap_up":
            changes["wrap_up_until"] = None
        new = _evolve(agent, status=row.target, since=self.now, **changes)
        self.agents[agent_id] = new
        return new

    def move_entry(self, call: str, trigger: str, guards: dict[str, bool] | None = None,
                   **changes) -> QueueEntry | None:
        entry = self.entries[call]
        row = lookup("entry", call, entry.status, trigger, guards)
        if row.target == GONE:
            self.remove_entry(call)
            return None
        new = _evolve(entry, status=row.target, **changes)
        self.entries[call] = new
        return new

    def drop_ringing_agent(self, entry: QueueEntry, agent_id: str, trigger: str) -> None:
        """Take one agent off a ringing caller; the caller waits again if none is left."""
        left = tuple(a for a in entry.ringing if a != agent_id)
        guards = {"other agents still ringing": bool(left), "last agent ringing": not left}
        self.move_entry(entry.call, trigger, guards, ringing=left,
                        ring_until=entry.ring_until if left else None,
                        tried=entry.tried + (agent_id,))

    def withdraw_ring(self, entry: QueueEntry, keep: str | None = None) -> None:
        for agent_id in entry.ringing:
            if agent_id != keep:
                self.emit(act.StopRinging(agent_id, entry.call))
                self.move_agent(agent_id, "ring_withdrawn")

    # --- handling, wrap-up -----------------------------------------------------------------

    def end_talk(self, agent: Agent, trigger: str) -> Agent:
        """CallEnded or a transfer: the agent goes to wrap-up, or straight to ready."""
        info = agent.call
        queue = self.cfg.queues[info.queue]
        talk_s = _secs(self.now, info.connected_at)
        info = replace(info, ended_at=self.now, talk_s=talk_s)
        self.agents[agent.id] = replace(agent, call=info)
        if queue.wrap_up_s > 0:
            until = self.now + _dt.timedelta(seconds=queue.wrap_up_s)
            agent = self.move_agent(agent.id, trigger, call=info, wrap_up_until=until,
                                    last_call_end=self.now)
            self.emit(act.StartWrapUp(agent.id, info.call, until))
            return agent
        agent = self.move_agent(agent.id, trigger, last_call_end=self.now)
        self.record_handled(agent.id, info)
        return agent

    def record_handled(self, agent_id: str, info: CallInfo) -> None:
        wrap_s = _secs(self.now, info.ended_at)
        self.log("wrap_up", info.queue, info.call, agent=agent_id, caller=info.caller,
                 wrap_s=wrap_s)
        samples = self.recent.get(info.queue, ()) + (info.talk_s + wrap_s,)
        self.recent[info.queue] = samples[-RECENT_HANDLE_SAMPLES:]

    def leave_wrap_up(self, agent: Agent, trigger: str, **changes) -> None:
        info = agent.call
        self.move_agent(agent.id, trigger, **changes)
        self.emit(act.EndWrapUp(agent.id, info.call))
        self.record_handled(agent.id, info)

    def cancel_ring(self, agent: Agent) -> None:
        """The ringing agent paused or logged out: stop, and offer the caller again."""
        entry = self.entries[agent.call.call]
        self.emit(act.StopRinging(agent.id, entry.call))
        self.log("ring_cancelled", entry.queue, entry.call, agent=agent.id, caller=entry.caller)
        self.drop_ringing_agent(entry, agent.id, "ring_cancelled")

    # --- joining and leaving ---------------------------------------------------------------

    def eligible(self, agent: Agent, queue: QueueConfig, skill: str | None) -> bool:
        if agent.id not in queue.members:
            return False
        if queue.skill is not None and agent.skills.get(queue.skill, 0) < queue.min_skill_level:
            return False
        return skill is None or agent.skills.get(skill, 0) >= 1

    def staffed(self, queue: QueueConfig, skill: str | None) -> bool:
        agents = self.agents
        for member in queue.members:
            a = agents.get(member)
            if a is not None and a.status in STAFFED and self.eligible(a, queue, skill):
                return True
        return False

    def join(self, queue_name: str, call: str, caller: str, priority: int, skill: str | None,
             detail: str | None = None, visited: tuple[str, ...] = ()) -> None:
        queue = self.cfg.queues[queue_name]
        if not queue.join_empty and not self.staffed(queue, skill):
            self.overflow(queue, call, caller, priority, skill, "join_empty", self.now, visited)
            return
        if queue.max_len is not None and len(self.in_order(queue_name)) >= queue.max_len:
            self.overflow(queue, call, caller, priority, skill, "max_len", self.now, visited)
            return
        self.seq += 1
        entry = QueueEntry(call=call, queue=queue_name, caller=caller, priority=priority,
                           skill=skill, joined_at=self.now, seq=self.seq)
        self.add_entry(entry)
        self.log("join", queue_name, call, caller=caller, position=self.position(entry),
                 detail=detail)

    def overflow(self, queue: QueueConfig, call: str, caller: str, priority: int,
                 skill: str | None, reason: str, joined_at: _dt.datetime,
                 visited: tuple[str, ...]) -> None:
        target = queue.overflow
        visited = visited + (queue.name,)
        # A chain that comes back to a queue already tried ends in voicemail.
        looping = target.kind == "queue" and target.name in visited
        target_text = "voicemail" if looping else str(target)
        self.log("overflow", queue.name, call, caller=caller, wait_s=_secs(self.now, joined_at),
                 detail=f"{reason}>{target_text}")
        self.emit(act.Overflow(call, target_text, reason))
        if target.kind == "queue" and not looping:
            self.join(target.name, call, caller, priority, None,
                      detail=f"overflow from {queue.name}", visited=visited)

    def call_in_progress(self, call: str) -> bool:
        return call in self.entries or any(
            a.call is not None and a.call.call == call and a.status in ("ringing", "dialing",
                                                                         "on_call")
            for a in self.agents.values())

    # --- after every event ----------------------------------------------------------------

    def leave_empty_queues(self) -> None:
        queues = self.cfg.queues
        # Nothing to do (the usual case) when every such queue with callers has a staffed
        # member and none of its callers asks for a skill: no pass over the callers then.
        if not any(queue.leave_when_empty and self.in_order(name)
                   and (self.skilled.get(name) or not self.staffed(queue, None))
                   for name, queue in queues.items()):
            return
        staffed: dict[tuple[str, str | None], bool] = {}  # agents do not change in here
        for entry in [self.entries[call] for call in self.in_order()]:
            queue = queues[entry.queue]
            if not (queue.leave_when_empty and entry.status == "waiting"
                    and entry.pinned_agent is None):
                continue
            key = (entry.queue, entry.skill)
            if key not in staffed:
                staffed[key] = self.staffed(queue, entry.skill)
            if not staffed[key]:
                self.move_entry(entry.call, "leave_empty", {"leave_when_empty": True})
                self.overflow(queue, entry.call, entry.caller, entry.priority, entry.skill,
                              "leave_empty", entry.joined_at, ())

    def dispatch(self) -> None:
        agents = self.agents
        free = {a.id for a in agents.values() if a.status == "ready"}
        if not free:
            return
        open_for_callbacks = None
        # Only the entry at hand changes in this loop (no entry joins or leaves).
        for call in self.in_order():
            if not free:
                return
            entry = self.entries[call]
            if entry.status != "waiting" and entry.status != "callback":
                continue
            if entry.status == "callback":
                if open_for_callbacks is None:
                    open_for_callbacks = bool(self.cfg.calling_hours(self.now))
                if not open_for_callbacks:
                    continue
            queue = self.cfg.queues[entry.queue]
            if entry.pinned_agent is not None:
                candidates = [self.agents[entry.pinned_agent]] \
                    if entry.pinned_agent in free else []
            else:
                # The strategies do not depend on the candidates' order (ties fall back to
                # member order), so walk whichever is shorter: free agents or members.
                members = queue.members
                pool = free if len(free) < len(members) else members
                candidates = [agents[a] for a in pool if a in free and a in members
                              and self.eligible(agents[a], queue, entry.skill)]
                untried = [a for a in candidates if a.id not in entry.tried]
                candidates = untried or candidates
            if entry.pinned_agent is not None:
                chosen = candidates
            else:
                chosen = choose_agents(queue, candidates, self.rr_last.get(queue.name),
                                       entry.skill or queue.skill)
            if not chosen:
                continue
            self.rr_last[queue.name] = chosen[-1].id
            info = CallInfo(call=entry.call, queue=entry.queue, caller=entry.caller,
                            priority=entry.priority, joined_at=entry.joined_at)
            if entry.status == "callback":
                agent = chosen[0]
                free.discard(agent.id)
                self.move_agent(agent.id, "callback_assigned", call=info)
                self.move_entry(entry.call, "callback_assigned", {"within calling hours": True},
                                ringing=(agent.id,))
                self.emit(act.PlaceCallback(entry.call, entry.callback_number, agent.id,
                                            entry.queue))
                self.log("callback_placed", entry.queue, entry.call, agent=agent.id,
                         caller=entry.caller, detail=entry.callback_number)
                continue
            for agent in chosen:
                free.discard(agent.id)
                self.move_agent(agent.id, "call_offered", call=info)
                self.emit(act.RingAgent(agent.id, entry.call, queue.ring_timeout_s,
                                        agent.extension, entry.queue, entry.caller))
                self.log("ring", entry.queue, entry.call, agent=agent.id, caller=entry.caller)
            self.move_entry(entry.call, "call_offered", ringing=tuple(a.id for a in chosen),
                            ring_until=self.now + _dt.timedelta(seconds=queue.ring_timeout_s))

    def announce(self) -> tuple:
        """Announce changed positions/ETAs that are due; then the state's deadlines."""
        return _scan(self.cfg, self.agents, self.entries, self.recent, self.order, self.now,
                     self.announce_entry)

    def announce_entry(self, entry: QueueEntry, position: int, eta: int | None) -> QueueEntry:
        new = self.move_entry(entry.call, "position_changed", {"announce interval passed": True},
                              announced=(position, eta), announced_at=self.now)
        self.emit(act.AnnouncePosition(entry.call, position, eta))
        return new

    # --- timeouts (Tick) -----------------------------------------------------------------

    def due(self, kind: int, after: Callable[[QueueConfig], float | None] | None = None) -> bool:
        """Is an entry's timeout of this kind (index in `_Cache.firsts`) due, or unknown?"""
        if self.firsts is None:
            return True
        now = self.now
        for name, first in self.firsts.items():
            at = first[kind]
            if at is None:
                continue
            if after is None:
                if at <= now:
                    return True
            else:
                limit = after(self.cfg.queues[name])
                if limit is not None and now - at >= _at_least(limit):
                    return True
        return False

    def fire_timeouts(self) -> None:
        now = self.now
        entries = self.entries
        # Rings that time out turn callers back to waiting: then the firsts are stale.
        if self.due(0):
            self.firsts = None
        # Entries are only changed (or leave) as their own turn comes, so walking a copy of
        # the order and reading each entry then sees what a snapshot of the entries would.
        for call in tuple(self.in_order()) if self.firsts is None else ():
            entry = entries[call]
            if entry.status == "ringing" and entry.ring_until <= now:
                for agent_id in entry.ringing:
                    self.emit(act.StopRinging(agent_id, entry.call))
                    self.log("no_answer", entry.queue, entry.call, agent=agent_id,
                             caller=entry.caller, detail="timeout")
                    self.move_agent(agent_id, "ring_timeout", pause_reason="no_answer")
                    entry = self.entries[entry.call]
                    self.drop_ringing_agent(entry, agent_id, "no_answer")
        expired = [a for a in self.agents.values()
                   if a.status == "wrap_up" and a.wrap_up_until <= now]
        for agent in sorted(expired, key=lambda a: a.id):
            self.leave_wrap_up(agent, "wrap_up_expired")
        if not (self.due(1) or self.due(2, lambda q: q.max_wait_s)
                or self.due(3, lambda q: q.callback_offer_after_s)):
            return
        queues = self.cfg.queues
        # queue → (max wait, callback offer) as `_at_least` durations (None: off)
        limits: dict[str, tuple[_dt.timedelta | None, _dt.timedelta | None]] = {}
        for name, queue in queues.items():
            limits[name] = (
                None if queue.max_wait_s is None else _at_least(queue.max_wait_s),
                None if queue.callback_offer_after_s is None
                else _at_least(queue.callback_offer_after_s))
        for entry in [entries[call] for call in self.in_order()]:
            status = entry.status
            if status == "waiting":
                max_wait, offer_after = limits[entry.queue]
                if max_wait is None and (offer_after is None or entry.callback_offered):
                    continue
                waited = now - entry.joined_at
            elif status != "callback":
                continue
            queue = queues[entry.queue]
            if status == "callback":
                if entry.callback_expires_at <= now:
                    self.move_entry(entry.call, "callback_expired")
                    self.log("callback_expired", entry.queue, entry.call, caller=entry.caller,
                             wait_s=_secs(now, entry.joined_at), detail=entry.callback_number)
            elif max_wait is not None and waited >= max_wait:
                self.move_entry(entry.call, "max_wait")
                self.overflow(queue, entry.call, entry.caller, entry.priority, entry.skill,
                              "max_wait", entry.joined_at, ())
            elif not entry.callback_offered and offer_after is not None \
                    and waited >= offer_after:
                self.move_entry(entry.call, "callback_offer_due", callback_offered=True)
                self.emit(act.OfferCallback(entry.call))
                self.log("callback_offer", entry.queue, entry.call, caller=entry.caller)


# --- event handlers -----------------------------------------------------------------------


def _agent_logged_in(run: _Run, e: ev.AgentLoggedIn) -> None:
    run.agent(e.agent)
    run.move_agent(e.agent, "AgentLoggedIn")


def _agent_left_ready(run: _Run, agent_id: str, trigger: str, **changes) -> None:
    """AgentReady / AgentPaused / AgentLoggedOut from whatever the agent was doing."""
    agent = run.agent(agent_id)
    if agent.status == "ringing":
        run.cancel_ring(agent)
        run.move_agent(agent_id, trigger, **changes)
    elif agent.status == "wrap_up":
        run.leave_wrap_up(agent, trigger, **changes)
    else:
        run.move_agent(agent_id, trigger, **changes)


def _agent_logged_out(run: _Run, e: ev.AgentLoggedOut) -> None:
    _agent_left_ready(run, e.agent, "AgentLoggedOut")


def _agent_ready(run: _Run, e: ev.AgentReady) -> None:
    _agent_left_ready(run, e.agent, "AgentReady")


def _agent_paused(run: _Run, e: ev.AgentPaused) -> None:
    _agent_left_ready(run, e.agent, "AgentPaused", pause_reason=e.reason)


def _caller_joined(run: _Run, e: ev.CallerJoined) -> None:
    if e.queue not in run.cfg.queues:
        raise IllegalEvent(f"unknown queue {e.queue!r}")
    if run.call_in_progress(e.call):
        raise IllegalEvent(f"call {e.call!r} is already queued or connected")
    run.join(e.queue, e.call, e.caller, e.priority, e.skill)


def _caller_gone(run: _Run, call: str, trigger: str, kind: str, detail: str | None) -> None:
    entry = run.entry(call)
    position = run.position(entry)
    run.move_entry(call, trigger)  # checks the entry may leave this way before any action
    run.withdraw_ring(entry)
    run.log(kind, entry.queue, call, caller=entry.caller, position=position,
            wait_s=_secs(run.now, entry.joined_at), detail=detail)


def _caller_abandoned(run: _Run, e: ev.CallerAbandoned) -> None:
    _caller_gone(run, e.call, "CallerAbandoned", "abandon", None)


def _caller_left(run: _Run, e: ev.CallerLeft) -> None:
    _caller_gone(run, e.call, "CallerLeft", "exit", e.reason)


def _agent_answered(run: _Run, e: ev.AgentAnswered) -> None:
    agent = run.agent_with_call(e.agent, e.call)
    entry = run.entry(e.call)
    run.move_entry(e.call, "AgentAnswered")
    run.withdraw_ring(entry, keep=e.agent)
    run.move_agent(e.agent, "AgentAnswered", call=replace(agent.call, connected_at=run.now),
                   calls_taken=agent.calls_taken + 1)
    run.emit(act.Bridge(e.call, e.agent))
    run.log("connect", entry.queue, e.call, agent=e.agent, caller=entry.caller,
            wait_s=_secs(run.now, entry.joined_at))


def _agent_no_answer(run: _Run, e: ev.AgentNoAnswer) -> None:
    run.agent_with_call(e.agent, e.call)
    entry = run.entry(e.call)
    run.move_agent(e.agent, "AgentNoAnswer", pause_reason="no_answer")
    run.log("no_answer", entry.queue, e.call, agent=e.agent, caller=entry.caller)
    run.drop_ringing_agent(entry, e.agent, "no_answer")


def _call_ended(run: _Run, e: ev.CallEnded) -> None:
    agent = run.agent_with_call(e.agent, e.call)
    if agent.status != "on_call":
        run.move_agent(e.agent, "CallEnded")  # raises: not allowed in this status
    info = agent.call
    run.log("complete", info.queue, e.call, agent=e.agent, caller=info.caller,
            talk_s=_secs(run.now, info.connected_at), detail=f"{e.hung_up_by}_hung_up")
    run.end_talk(agent, "CallEnded")


def _wrap_up_done(run: _Run, e: ev.WrapUpDone) -> None:
    agent = run.agent(e.agent)
    if agent.status != "wrap_up":
        run.move_agent(e.agent, "WrapUpDone")  # raises
    run.leave_wrap_up(agent, "WrapUpDone")


def _callback_requested(run: _Run, e: ev.CallbackRequested) -> None:
    entry = run.entry(e.call)
    queue = run.cfg.queues[entry.queue]
    run.move_entry(e.call, "CallbackRequested", callback_number=e.number,
                   callback_requested_at=run.now,
                   callback_expires_at=run.now + _dt.timedelta(seconds=queue.callback_expiry_s))
    run.log("callback", entry.queue, e.call, caller=entry.caller, position=run.position(entry),
            wait_s=_secs(run.now, entry.joined_at), detail=e.number)


def _callback_answered(run: _Run, e: ev.CallbackAnswered) -> None:
    entry = run.entry(e.call)
    run.move_entry(e.call, "CallbackAnswered")
    agent = run.agents[entry.ringing[0]]
    run.move_agent(agent.id, "CallbackAnswered", call=replace(agent.call, connected_at=run.now),
                   calls_taken=agent.calls_taken + 1)
    run.emit(act.Bridge(e.call, agent.id))
    run.log("connect", entry.queue, e.call, agent=agent.id, caller=entry.caller,
            wait_s=_secs(run.now, entry.joined_at), detail="callback")


def _callback_failed(run: _Run, e: ev.CallbackFailed) -> None:
    entry = run.entry(e.call)
    run.move_entry(e.call, "CallbackFailed")
    run.move_agent(entry.ringing[0], "CallbackFailed")
    run.log("callback_failed", entry.queue, e.call, agent=entry.ringing[0], caller=entry.caller,
            wait_s=_secs(run.now, entry.joined_at), detail=e.reason)


def _transfer_requested(run: _Run, e: ev.TransferRequested) -> None:
    agent = run.agent_with_call(e.agent, e.call)
    if agent.status != "on_call":
        run.move_agent(e.agent, "TransferRequested")  # raises
    if e.kind == "queue" and e.target not in run.cfg.queues:
        raise IllegalEvent(f"transfer to unknown queue {e.target!r}")
    if e.kind == "agent":
        target = run.agent(e.target)
        if target.id == e.agent or target.status == "logged_out":
            raise IllegalEvent(f"cannot transfer to agent {e.target}: "
                               f"{'the same agent' if target.id == e.agent else 'logged out'}")
    info = agent.call
    run.emit(act.Unbridge(e.call, e.agent))
    run.log("transfer", info.queue, e.call, agent=e.agent, caller=info.caller,
            talk_s=_secs(run.now, info.connected_at), detail=f"{e.kind}:{e.target}")
    run.end_talk(agent, "TransferRequested")
    if e.kind == "number":
        run.emit(act.TransferToNumber(e.call, e.target))
    elif e.kind == "queue":
        run.join(e.target, e.call, info.caller, info.priority, None,
                 detail=f"transfer from {e.agent}")
    else:
        # Straight to one agent: bypasses join rules, waits for that agent only.
        run.seq += 1
        entry = QueueEntry(call=e.call, queue=info.queue, caller=info.caller,
                           priority=info.priority, skill=None, joined_at=run.now, seq=run.seq,
                           pinned_agent=e.target)
        run.add_entry(entry)
        run.log("join", info.queue, e.call, caller=info.caller, position=run.position(entry),
                detail=f"transfer from {e.agent} to {e.target}")


def _callbacks_restored(run: _Run, e: ev.CallbacksRestored) -> None:
    """Kept places back in their queues, ordered by original enqueue time among the callers
    already there (priority still first): every entry's `seq` is renumbered in that order."""
    restored: list[QueueEntry] = []
    for p in e.places:
        if p.queue not in run.cfg.queues:
            raise IllegalEvent(f"unknown queue {p.queue!r}")
        if run.call_in_progress(p.call):
            raise IllegalEvent(f"call {p.call!r} is already queued or connected")
        restored.append(QueueEntry(
            call=p.call, queue=p.queue, caller=p.caller, priority=p.priority, skill=p.skill,
            joined_at=p.joined_at, seq=0, status="callback", callback_number=p.number,
            callback_requested_at=p.requested_at, callback_expires_at=p.expires_at,
            callback_offered=True))
    if not restored:
        return
    # Existing entries' seq already follows their joined_at; restored ones go before an
    # existing caller who joined at the same instant, among themselves in the given order.
    ranked = sorted(
        [(x.joined_at, 1, x.seq, x) for x in run.entries.values()]
        + [(x.joined_at, 0, i, x) for i, x in enumerate(restored)],
        key=lambda t: t[:3])
    entries = {}
    for seq, (_, _, _, x) in enumerate(ranked, start=1):
        entries[x.call] = _evolve(x, seq=seq)
    run.entries = entries
    run.seq = max(run.seq, len(ranked))
    run.order, run.skilled = _build_order(entries)
    run.owned = set(run.order)
    run.firsts = None
    for x in restored:
        x = entries[x.call]
        run.log("callback_restored", x.queue, x.call, caller=x.caller, position=run.position(x),
                wait_s=_secs(run.now, x.joined_at), detail=x.callback_number)


def _tick(run: _Run, e: ev.Tick) -> None:
    run.fire_timeouts()


_HANDLERS = {
    ev.AgentLoggedIn: _agent_logged_in,
    ev.AgentLoggedOut: _agent_logged_out,
    ev.AgentReady: _agent_ready,
    ev.AgentPaused: _agent_paused,
    ev.CallerJoined: _caller_joined,
    ev.CallerAbandoned: _caller_abandoned,
    ev.CallerLeft: _caller_left,
    ev.AgentAnswered: _agent_answered,
    ev.AgentNoAnswer: _agent_no_answer,
    ev.CallEnded: _call_ended,
    ev.WrapUpDone: _wrap_up_done,
    ev.CallbackRequested: _callback_requested,
    ev.CallbackAnswered: _callback_answered,
    ev.CallbackFailed: _callback_failed,
    ev.TransferRequested: _transfer_requested,
    ev.CallbacksRestored: _callbacks_restored,
    ev.Tick: _tick,
}


def step(state: AcdState, event: ev.Event, now: _dt.datetime) -> tuple[AcdState, list[act.Action]]:
    """Apply one event at `now`; returns the new state and the actions, in order.

    Raises `IllegalEvent` (and leaves `state` untouched, being immutable) for unknown
    agents/calls/queues, events not allowed in the current status, or time going back.
    """
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise IllegalEvent(f"not an ACD event: {event!r}")
    if not isinstance(now, _dt.datetime) or now.tzinfo is None:
        raise IllegalEvent(f"now must be an aware datetime, got {now!r}")
    if state.now is not None and now < state.now:
        raise IllegalEvent(f"time went backwards: {now.isoformat()} < {state.now.isoformat()}")
    run = _Run(state, now)
    handler(run, event)
    run.leave_empty_queues()
    run.dispatch()
    return run.freeze(run.announce()), run.actions


def next_deadline(state: AcdState) -> _dt.datetime | None:
    """When the driver should send the next `Tick` (None: nothing is timed)."""
    cache = _cache_of(state)
    deadline = cache.deadline
    if cache.callbacks and state.now is not None and not state.config.calling_hours(state.now) \
            and any(a.status == "ready" for a in state.agents.values()):
        recheck = state.now + _dt.timedelta(seconds=CALLBACK_RECHECK_S)
        if deadline is None or recheck < deadline:
            deadline = recheck
    return deadline
