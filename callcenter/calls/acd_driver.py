"""Drives the pure ACD core: feeds it events, performs its actions, and arms one timer.

It turns queue decisions into events for the calls (ring an agent's phone, bridge, announce
position, overflow to a voice message), delivered through the `CallControl` port — it never
holds a call object; tells each agent's desk about its own calls (screen pop over WebSocket to
that agent only), keeps the queue log, and answers the wallboard's questions. Towards the
calls it is their `AcdPort` (`handle`, `agents_staffed`, `agent_extension`, `longest_ready`,
`release_consulted`).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import asdict
from datetime import datetime, timedelta, tzinfo
from typing import Any, Awaitable, Callable

from callcenter import acd
from callcenter.calls import model as calls
from callcenter.calls.ports import CallControl, CallInfo

log = logging.getLogger(__name__)

DEFAULT_QUEUES = ("report", "consult", "general")
# Who watches the wallboard, and how often it may be told to refresh.
WALLBOARD_ROLES = ("supervisor", "shift_lead", "commander", "admin")
WALLBOARD_INTERVAL_S = 1.0


def default_config(
    profiles, *, ring_timeout_s: float = 20.0, wrap_up_s: float = 30.0, callback_offer_after_s: float | None = 30.0
) -> acd.AcdConfig:
    """Every agent in every queue, longest-idle first; no agent staffed → the IVR takes a message."""
    agents = [
        acd.AgentConfig(id=p.username, extension=p.extension, skills=dict(p.skills))
        for p in profiles
        if getattr(p, "role", "agent") == "agent"
    ]
    members = {a.id: 0 for a in agents}
    queues = [
        acd.QueueConfig(
            name=name,
            strategy="longest_idle",
            members=members,
            max_wait_s=300,
            overflow=acd.OverflowTarget("voicemail"),
            join_empty=False,
            leave_when_empty=True,
            wrap_up_s=wrap_up_s,
            ring_timeout_s=ring_timeout_s,
            announce_interval_s=30,
            callback_offer_after_s=callback_offer_after_s,
        )
        for name in DEFAULT_QUEUES
    ]
    return acd.AcdConfig.build(queues, agents)


class AcdDriver:
    def __init__(
        self,
        config: acd.AcdConfig,
        *,
        clock,
        tz: tzinfo,
        calls: CallControl,
        publish: Callable[..., None],
        record: Callable[[Any], Awaitable[None]],
        spawn: Callable[[Awaitable[Any]], Any],
        screen_pop: Callable[[str, Any], Awaitable[dict]] | None = None,
    ):
        self.clock = clock
        self.tz = tz
        self.calls = calls
        self.publish = publish
        self.record = record
        self.spawn = spawn
        self.screen_pop = screen_pop
        self.state = acd.new_state(config, self.now())
        self.log: deque = deque(maxlen=20000)
        self._timer = None
        self._timer_at: datetime | None = None
        self._wallboard_pending = False
        self.errors = 0
        # Kept-place callbacks in the database (callcenter.kept_callbacks), when set.
        self.kept = None
        self.kept_max_tries = 3
        self.kept_retry_s = 60.0
        self._kept_calls: set[str] = set()
        self._kept_lock = None
        self.stopping = False  # no new callbacks are placed once the hotline is stopping

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), self.tz)

    # -- facts for the IVR and the desk ------------------------------------------------------
    def agents_ready(self) -> int:
        return sum(1 for a in self.state.agents.values() if a.status == "ready")

    def agents_staffed(self) -> int:
        """Agents at work (logged in, not paused): a caller who queues will be answered."""
        return sum(1 for a in self.state.agents.values() if a.status not in ("logged_out", "paused"))

    def agent_extension(self, agent_id: str) -> str | None:
        agent = self.state.agents.get(agent_id)
        return agent.extension if agent is not None else None

    def longest_ready(self, has_phone: Callable[[str], bool]) -> tuple[str, str] | None:
        """(agent, extension) of the agent ready longest whose phone is registered, or None."""
        ready = [a for a in self.state.agents.values() if a.status == "ready" and has_phone(a.extension)]
        if not ready:
            return None
        chosen = min(ready, key=lambda a: (a.since is None, a.since or 0, a.id))
        return chosen.id, chosen.extension

    def release_consulted(self, agent_id: str) -> None:
        """A colleague paused for a consultation ("consult") is ready again once the call is
        over, unless they changed their state themselves meanwhile."""
        agent = self.state.agents.get(agent_id)
        if agent is not None and agent.status == "paused" and agent.pause_reason == "consult":
            self.handle(acd.AgentReady(agent_id))

    def agent_status(self, agent_id: str) -> dict | None:
        agent = self.state.agents.get(agent_id)
        if agent is None:
            return None
        return {
            "agent": agent.id,
            "extension": agent.extension,
            "status": agent.status,
            "since": agent.since.isoformat() if agent.since else None,
            "pause_reason": agent.pause_reason,
            "call": agent.call.call if agent.call else None,
        }

    def wallboard(self) -> dict:
        now = self.now()
        since = now.replace(hour=0, minute=0, second=0, microsecond=0)
        board = acd.wallboard(self.state, list(self.log), now, since)
        return _plain(asdict(board))

    # -- events in ---------------------------------------------------------------------------
    def handle(self, event) -> bool:
        """Apply one event; False (and a log line) when the ACD refuses it."""
        before = {a.id: a.status for a in self.state.agents.values()}
        try:
            self.state, actions = acd.step(self.state, event, self.now())
        except acd.AcdError as exc:
            self.errors += 1
            log.warning("ACD refused %r: %s", event, exc)
            return False
        for action in actions:
            try:
                self._perform(action)
            except Exception:
                self.errors += 1
                log.exception("ACD action %r failed", action)
        for agent in self.state.agents.values():
            if before.get(agent.id) != agent.status:
                self.publish("agent_state", self.agent_status(agent.id), to_user=agent.id)
                self._wallboard_changed()
        self._rearm()
        return True

    # -- kept-place callbacks in the database ----------------------------------------------------
    def keep_places(self, store, *, max_tries: int, retry_s: float) -> None:
        self.kept, self.kept_max_tries, self.kept_retry_s = store, max_tries, retry_s

    async def restore_kept(self) -> int:
        """Every pending kept place back into its queue at its original place; how many."""
        if self.kept is None:
            return 0
        places = tuple(await self.kept.pending())
        if not places:
            return 0
        if not self.handle(acd.CallbacksRestored(places)):
            for place in places:  # one refused place must not keep the others out
                self.handle(acd.CallbacksRestored((place,)))
        restored = [p for p in places if p.call in self.state.entries]
        self._kept_calls.update(p.call for p in restored)
        log.info("ACD: %d kept-place callback(s) restored to their queues", len(restored))
        return len(restored)

    def _kept_op(self, coro) -> None:
        """Database changes of kept places run one after another, in the order of the events."""
        import asyncio

        if self._kept_lock is None:
            self._kept_lock = asyncio.Lock()
        lock = self._kept_lock

        async def run() -> None:
            async with lock:
                await coro

        self.spawn(run())

    def _kept_event(self, a) -> None:
        now = self.now()
        kind = a.kind
        if kind == "callback":
            entry = self.state.entries.get(a.call)
            if entry is None or entry.callback_number is None:
                return
            self._kept_calls.add(a.call)
            self._kept_op(self.kept.add(acd.KeptPlace(
                call=entry.call, queue=entry.queue, caller=entry.caller, number=entry.callback_number,
                joined_at=entry.joined_at, requested_at=entry.callback_requested_at,
                expires_at=entry.callback_expires_at, priority=entry.priority, skill=entry.skill,
            ), now))
        elif a.call not in self._kept_calls:
            return
        elif kind == "connect":
            self._kept_calls.discard(a.call)
            self._kept_op(self.kept.finish(a.call, "done", "answered", now))
        elif kind == "callback_failed":
            self._kept_op(self._kept_failed(a.call, a.agent, a.detail or "failed", now))
        elif kind == "callback_expired":
            self._kept_calls.discard(a.call)
            self._kept_op(self.kept.expire(a.call, now))
        elif kind == "exit":
            self._kept_calls.discard(a.call)
            self._kept_op(self.kept.finish(a.call, "cancelled", a.detail or "cancelled", now))

    async def _kept_failed(self, call: str, agent: str | None, reason: str, now: datetime) -> None:
        result = await self.kept.failed(call, agent, reason, now, self.kept_max_tries)
        if isinstance(result, acd.KeptPlace):
            self.clock.callLater(self.kept_retry_s, self._kept_retry, result)
        else:
            self._kept_calls.discard(call)
            if result is not None:
                log.info("kept-place callback %s moved to the scheduled callbacks as %s", call, result)

    def _kept_retry(self, place) -> None:
        if self.stopping or place.call in self.state.entries:
            return
        self.handle(acd.CallbacksRestored((place,)))

    def _wallboard_changed(self) -> None:
        """Tell supervisors' wallboards to refresh: at most once a second, however busy it is."""
        if self._wallboard_pending:
            return
        self._wallboard_pending = True

        def send() -> None:
            self._wallboard_pending = False
            self.publish("wallboard", {"changed": True}, to_roles=WALLBOARD_ROLES)

        self.clock.callLater(WALLBOARD_INTERVAL_S, send)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = None
        self.handle(acd.Tick())

    def _rearm(self) -> None:
        at = acd.next_deadline(self.state)
        if at == self._timer_at:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer, self._timer_at = None, at
        if at is not None:
            delay = max(0.0, (at - self.now()).total_seconds())
            self._timer = self.clock.callLater(delay, self._tick)

    # -- actions out -----------------------------------------------------------------------------
    def _perform(self, a) -> None:
        perform = self._actions.get(type(a))
        if perform is None:
            log.info("ACD action %s is not supported by the call side yet", type(a).__name__)
        else:
            perform(self, a)

    def _ring(self, a: acd.RingAgent) -> None:
        if not self.calls.deliver(a.call, calls.AgentRingRequested(a.agent, a.extension, a.timeout_s)):
            self.clock.callLater(0, self.handle, acd.AgentNoAnswer(a.agent, a.call))
            return
        if self.screen_pop is not None:
            info = self.calls.describe(a.call)
            if info is not None:
                self.spawn(self._pop(a, info))

    def _stop_ringing(self, a: acd.StopRinging) -> None:
        self.calls.deliver(a.call, calls.RingStopped(a.agent))
        self.publish("screen_pop_cancelled", {"call_id": a.call}, to_user=a.agent)

    def _transfer_to_number(self, a: acd.TransferToNumber) -> None:
        if not self.calls.deliver(a.call, calls.TransferToNumberRequested(a.number)):
            log.warning("transfer of %s to %s failed", a.call, a.number)

    def _place_callback(self, a: acd.PlaceCallback) -> None:
        if self.stopping:  # the place stays pending in the database for the next start
            return
        agent = self.state.agents[a.agent]
        queue = self.state.config.queues[a.queue]
        if not self.calls.place_callback(a.call, a.number, a.agent, agent.extension, a.queue, queue.ring_timeout_s):
            self.clock.callLater(0, self.handle, acd.CallbackFailed(a.call, "agent phone not registered"))
            return
        if self.screen_pop is not None:
            self.spawn(self._pop_callback(a))

    def _wrap_up(self, a) -> None:
        kind = "wrap_up_started" if isinstance(a, acd.StartWrapUp) else "wrap_up_ended"
        data = {"call_id": a.call}
        if isinstance(a, acd.StartWrapUp):
            data["until"] = a.until.isoformat()
        self.publish(kind, data, to_user=a.agent)

    def _logged(self, a: acd.QueueEventLogged) -> None:
        log.info("queue %s: %s call=%s agent=%s %s", a.queue, a.kind, a.call, a.agent or "-", a.detail or "")
        self.log.append(a)
        self.spawn(self.record(a))
        if self.kept is not None:
            self._kept_event(a)
        self._wallboard_changed()

    _actions: dict[type, Callable[["AcdDriver", Any], None]] = {
        acd.RingAgent: _ring,
        acd.StopRinging: _stop_ringing,
        acd.Bridge: lambda self, a: self.calls.deliver(a.call, calls.QueueBridged(a.agent)),
        acd.AnnouncePosition: lambda self, a: self.calls.deliver(a.call, calls.PositionAnnounced(a.position, a.eta_s)),
        acd.Overflow: lambda self, a: self.calls.deliver(a.call, calls.QueueOverflowed(a.target, a.reason)),
        acd.Unbridge: lambda self, a: self.calls.deliver(a.call, calls.Unbridged(a.agent)),
        acd.TransferToNumber: _transfer_to_number,
        acd.OfferCallback: lambda self, a: self.calls.deliver(a.call, calls.CallbackOffered()),
        acd.PlaceCallback: _place_callback,
        acd.StartWrapUp: _wrap_up,
        acd.EndWrapUp: _wrap_up,
        acd.QueueEventLogged: _logged,
    }

    async def _pop(self, a: acd.RingAgent, call: CallInfo) -> None:
        # What is in memory goes out at once, as the phone starts ringing; the caller's
        # history (database reads) follows as `screen_pop_history`.
        self.publish("screen_pop", {
            "call_id": call.call_id, "caller": call.caller or "", "did": call.did,
            "ivr_path": list(call.ivr_path), "queue": a.queue, "agent": a.agent, "extension": a.extension,
            "earlier_calls": [], "earlier_cases": [], "history_pending": True,
        }, to_user=a.agent)
        data = await self.screen_pop(a.agent, call)
        self.publish("screen_pop_history", {
            "call_id": call.call_id,
            "earlier_calls": data.get("earlier_calls", []),
            "earlier_cases": data.get("earlier_cases", []),
        }, to_user=a.agent)

    async def _pop_callback(self, a: acd.PlaceCallback) -> None:
        call = self.calls.describe(a.call)
        if call is None:
            return
        data = await self.screen_pop(a.agent, call)
        data.update({"queue": a.queue, "agent": a.agent, "callback": True})
        self.publish("screen_pop", data, to_user=a.agent)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _plain(value):
    """asdict output with datetimes and timedeltas as JSON-friendly values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value
