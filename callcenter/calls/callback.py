"""Callbacks (预约回拨): ring the agent first, so they see the case before the citizen's phone
rings (preview), then dial the citizen through the trunk, then bridge.

A kept-place callback stands in the router under the original caller's call id, which is the
ACD's key; an agent's scheduled callback reports each attempt's outcome to the dialer.
Recorded like an inbound call: the citizen left, what the citizen heard right.
"""

from __future__ import annotations

import logging
from typing import Callable

from callcenter import acd
from callcenter.calls import model as m
from callcenter.calls.controller import attempt_outcome
from callcenter.calls.legs import AgentLeg
from callcenter.calls.ports import CallInfo
from callcenter.calls.recording import FLUSH_EVERY_FRAMES, _Recording
from callcenter.media import events as media
from callcenter.media.recorder import StereoMixer

log = logging.getLogger("callcenter.calls")


class CallbackCall:
    """One callback: the agent's leg, then the citizen's, bridged by the legs themselves."""

    def __init__(self, router, call_id: str, number: str, agent_id: str, queue: str | None,
                 on_outcome: Callable[[str], None] | None = None):
        self.router = router
        # None: a queue callback, reported to the ACD; else an agent's scheduled callback,
        # whose attempt outcome (answered, busy, no_answer, failed) goes to the dialer.
        self.on_outcome = on_outcome
        self.call_id = call_id
        self.caller = number
        self.did = "callback"
        self.agent_id = agent_id
        self.queue = queue
        self.ivr_path = ["callback"]
        self.agent_leg: AgentLeg | None = None
        self.citizen: AgentLeg | None = None
        self.bridged = False
        self.ended = False
        self.mixer = StereoMixer()
        self.rec: _Recording | None = None

    @property
    def leg(self):
        return self.citizen.leg if self.citizen is not None else None

    def describe(self) -> CallInfo:
        return CallInfo(self.call_id, self.caller, self.did, tuple(self.ivr_path))

    def start(self, extension: str, ring_timeout_s: float) -> bool:
        r = self.router
        bindings = r.bindings_for(extension)
        if not bindings:
            return False
        self.agent_leg = AgentLeg(r, self, extension)
        b = bindings[0]
        if not self.agent_leg.dial(b.contact, b.source, ring_timeout_s, from_user=self.caller):
            return False
        r.callbacks[self.call_id] = self
        return True

    def deliver(self, event) -> bool:
        """Events from the ACD: its Bridge needs nothing (audio flows since the citizen answered)."""
        return isinstance(event, m.QueueBridged)

    # legs report here
    def leg_answered(self, leg: AgentLeg) -> None:
        r = self.router
        if leg is self.agent_leg:
            route = r.outbound_route(self.caller)
            self.citizen = AgentLeg(r, self, self.caller, peer=self.agent_leg)
            self.agent_leg.peer = self.citizen
            ok = route is not None and self.citizen.dial(
                route[0], route[1], 40.0, from_user=r.callback_from, credentials=route[2], record_sent=True
            )
            if not ok:
                self._failed("no route to the citizen" if route is None else "dial failed")
        elif leg is self.citizen:
            self.bridged = True
            self.rec = r.start_recording(call_id=self.call_id, kind="call", name="callback", channels=2)
            if self.on_outcome is not None:
                self.on_outcome("answered")
            else:
                r.acd.handle(acd.CallbackAnswered(self.call_id))

    def leg_gone(self, leg: AgentLeg, reason: str, status: int | None, was_bridged: bool) -> None:
        if self.ended:
            return
        if self.bridged:
            if self.on_outcome is None:
                by = "caller" if leg is self.citizen else "agent"
                self.router.acd.handle(acd.CallEnded(self.agent_id, self.call_id, hung_up_by=by))
            self._end(reason)
        else:
            self._failed(reason, status if leg is self.citizen else None)

    def hangup(self, reason: str) -> None:
        self._end(reason)

    def leg_media(self, leg: AgentLeg, events) -> None:
        rec = self.rec
        if leg is not self.citizen or rec is None:
            return
        for ev in events:
            if isinstance(ev, media.AudioReceived):
                self.mixer.add_caller(ev.pcm)
            elif isinstance(ev, media.AudioSent):
                self.mixer.add_agent(ev.pcm)
                rec.pending += self.mixer.tick()
                rec.frames += 1
                if rec.frames % FLUSH_EVERY_FRAMES == 0:
                    self.router.flush(rec)

    def _failed(self, reason: str, status: int | None = None) -> None:
        log.info("callback %s to %s failed: %s", self.call_id, self.caller, reason)
        if self.on_outcome is not None:
            self.on_outcome(attempt_outcome(status))
        else:
            self.router.acd.handle(acd.CallbackFailed(self.call_id, reason))
        self._end(reason)

    def _end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        for leg in (self.agent_leg, self.citizen):
            if leg is not None:
                leg.hangup(reason)
        if self.router.callbacks.get(self.call_id) is self:
            self.router.callbacks.pop(self.call_id)
        rec = self.rec
        if rec is not None:
            rec.pending += self.mixer.drain()
            self.router.finish_recording(rec)
