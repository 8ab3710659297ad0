"""Callbacks (预约回拨): ring the agent first, so they see the case before the citizen's phone
rings (preview), then dial the citizen through the trunk, then bridge.

A kept-place callback stands in the router under the original caller's call id, which is the
ACD's key; an agent's scheduled callback reports each attempt's outcome to the dialer.
Recorded like an inbound call: the citizen left, what the citizen heard right.

Its phases (callback_preview → callback_dialing → callback_bridged → ended) are rows of the
call table (table.py); this driver turns leg reports into events, steps the controller and
performs the actions, as call.py does for the other calls.
"""

from __future__ import annotations

import logging
from typing import Callable

from callcenter.calls import model as m
from callcenter.calls.controller import new_call, step
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
        self.state = new_call(call_id, "callback", caller=number, has_flow=False,
                              acd_present=on_outcome is None, agent=agent_id)
        self.agent_leg: AgentLeg | None = None
        self.citizen: AgentLeg | None = None
        self.mixer = StereoMixer()
        self.rec: _Recording | None = None
        self._perform: dict[type, Callable] = {
            m.DialCitizen: self._dial_citizen,
            m.StartCallbackRecording: self._start_recording,
            m.TellAcd: lambda a: self.router.acd.handle(a.event),
            m.ReportOutcome: lambda a: self.on_outcome(a.outcome),
            m.HangupAgentLeg: lambda a: self._hangup_leg(self.agent_leg, a.reason),
            m.HangupCitizenLeg: lambda a: self._hangup_leg(self.citizen, a.reason),
            m.Forget: self._forget,
            m.FinishCallRecording: self._finish_recording,
        }

    @property
    def leg(self):
        return self.citizen.leg if self.citizen is not None else None

    @property
    def bridged(self) -> bool:
        return self.state.phase == "callback_bridged"

    @property
    def ended(self) -> bool:
        return self.state.ended

    def describe(self) -> CallInfo:
        return CallInfo(self.call_id, self.caller, self.did, tuple(self.ivr_path), agent=self.agent_id, callback=True)

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

    def handle(self, event: m.CallEvent) -> bool:
        """Step the controller and perform the actions; False if the phase has no row for it."""
        try:
            state, actions = step(self.state, event)
        except m.IllegalCallEvent as exc:
            log.debug("callback %s: %s ignored", self.call_id, exc)
            return False
        unknown = [a for a in actions if type(a) not in self._perform]
        if unknown:
            # A row for any live phase (listen-in, IVR digits) that a callback cannot perform.
            log.warning("callback %s: %s refused (%s)", self.call_id, type(event).__name__, unknown)
            return False
        self.state = state
        for action in actions:
            self._perform[type(action)](action)
        return True

    def deliver(self, event) -> bool:
        """Events from the ACD: its Bridge needs nothing (audio flows since the citizen answered)."""
        return self.handle(event)

    # legs report here
    def leg_answered(self, leg: AgentLeg) -> None:
        if leg is self.agent_leg:
            self.handle(m.AgentLegAnswered(self.agent_id))
        elif leg is self.citizen:
            self.handle(m.CitizenAnswered())

    def leg_gone(self, leg: AgentLeg, reason: str, status: int | None, was_bridged: bool) -> None:
        if leg is self.citizen:
            event: m.CallEvent = m.CitizenGone(reason, status)
        else:
            event = m.AgentLegGone(self.agent_id, reason, status, was_bridged)
        if self.handle(event) and self.ended and not self.state.answered:
            log.info("callback %s to %s failed: %s", self.call_id, self.caller, reason)

    def hangup(self, reason: str) -> None:
        self.handle(m.HangupRequested(reason))

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

    # actions
    def _dial_citizen(self, _action) -> None:
        r = self.router
        route = r.outbound_route(self.caller)
        self.citizen = AgentLeg(r, self, self.caller, peer=self.agent_leg)
        self.agent_leg.peer = self.citizen
        ok = route is not None and self.citizen.dial(
            route[0], route[1], 40.0, from_user=r.callback_from, credentials=route[2], record_sent=True
        )
        if ok:
            self.handle(m.CitizenDialled(True))
        else:
            reason = "no route to the citizen" if route is None else "dial failed"
            log.info("callback %s to %s failed: %s", self.call_id, self.caller, reason)
            self.handle(m.CitizenDialled(False, reason))

    def _start_recording(self, _action) -> None:
        self.rec = self.router.start_recording(call_id=self.call_id, kind="call", name="callback", channels=2)

    @staticmethod
    def _hangup_leg(leg: AgentLeg | None, reason: str) -> None:
        if leg is not None:
            leg.hangup(reason)

    def _forget(self, _action) -> None:
        if self.router.callbacks.get(self.call_id) is self:
            self.router.callbacks.pop(self.call_id)

    def _finish_recording(self, _action) -> None:
        rec = self.rec
        if rec is not None:
            rec.pending += self.mixer.drain()
            self.router.finish_recording(rec)
