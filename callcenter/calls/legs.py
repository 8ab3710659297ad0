"""Our calls to agents' phones and outside numbers (we are the UAC), bridged frame by frame.

A leg reports to its owner (an inbound `Call`, or a `CallbackCall`) through four methods:
`leg_answered(leg)`, `leg_gone(leg, reason, status, was_bridged)`, `leg_held(leg, held)` and,
if the owner has it, `leg_media(leg, events)`.
"""

from __future__ import annotations

import logging
from typing import Any

from callcenter.media import events as media
from callcenter.media.session import MediaSession
from callcenter.sip import events as sip_events
from callcenter.sip.sdp import SdpError, negotiate, read_answer

log = logging.getLogger("callcenter.calls")

HOLD_TONE_SILENCE = bytes(8000 * 2 * 3)  # three seconds of silence after each hold tone


def use_answer(session: MediaSession, n) -> None:
    """Send to where, and in the codec, the far end's SDP answer says (legs we dialled)."""
    session.set_codec(n.codec, n.payload_type, n.dtmf_payload_type)
    session.set_remote(n.remote)
    session.hold(False)


class AgentLeg:
    """Our call to an agent's phone (we are the UAC), bridged to a caller once answered.

    Audio is bridged frame by frame through each session's `feed_bridge`; both legs keep
    their own codec, so PCMA on one side and PCMU on the other just works (each session
    encodes what it sends).
    """

    def __init__(self, router, call, extension: str, acd_agent: str | None = None, peer=None,
                 monitor: bool = False):
        self.router = router
        # A listen-in leg: fed by the call's mixer, its own audio goes nowhere.
        self.monitor = monitor
        self.call = call  # the owner: an inbound Call, or a CallbackCall
        self.extension = extension  # an agent's extension, or the citizen's number
        self.acd_agent = acd_agent
        # The leg our audio goes to; None = the owner's own (inbound) leg.
        self.peer: AgentLeg | None = peer
        self.call_id: str | None = None
        self.leg = None
        self.bridged = False
        self.ended = False
        self.ring_timer: Any = None
        self.holding = False  # the far phone has us on hold
        self.desk_held = False  # the agent holds the caller from the desk
        self.muted = False  # the agent muted themselves from the desk

    def peer_session(self):
        if self.monitor:
            return None
        leg = self.peer.leg if self.peer is not None else self.call.leg
        return leg.session if leg is not None else None

    def dial(self, contact: str, remote: tuple[str, int], timeout_s: float, *, from_user: str | None = None,
             credentials=None, record_sent: bool = False) -> bool:
        r = self.router
        placed = r.dial_out(contact, remote, from_user=from_user or self.call.caller or "anonymous",
                            credentials=credentials, listener=self.media_events, record_sent=record_sent)
        if placed is None:
            return False
        self.leg, self.call_id = placed
        r.agent_legs[self.call_id] = self
        self.ring_timer = r.clock.callLater(timeout_s, self._no_answer)
        return True

    def media_events(self, events) -> None:
        hook = getattr(self.call, "leg_media", None)
        for ev in events:
            if isinstance(ev, media.AudioReceived) and self.bridged and not (self.muted or self.desk_held):
                peer = self.peer_session()
                if peer is not None:
                    peer.feed_bridge(ev.pcm)
        if hook is not None:
            hook(self, events)

    def sip_event(self, ev) -> None:
        if isinstance(ev, sip_events.ReofferReceived):
            self._reoffer(ev.sdp)
        elif isinstance(ev, sip_events.CallAnswered):
            self._answered(ev.sdp)
        elif isinstance(ev, (sip_events.CallFailed, sip_events.CallEnded, sip_events.CallCancelled)):
            reason = getattr(ev, "reason", "cancelled")
            status = getattr(ev, "status", None)
            self._gone(f"{status} {reason}" if status else reason, status)

    def _answered(self, sdp: bytes) -> None:
        self._cancel_ring()
        try:
            n = read_answer(sdp)
        except SdpError as exc:
            log.warning("agent %s answered with unusable SDP (%s); hanging up", self.extension, exc)
            self.hangup("bad sdp")
            self._gone("bad sdp", None)
            return
        use_answer(self.leg.session, n)
        self.bridged = True
        self.call.leg_answered(self)

    def _reoffer(self, sdp: bytes) -> None:
        """The far phone put the call on hold (or took it off): answer, and play the caller a
        hold tone meanwhile instead of silence."""
        r = self.router
        if self.leg is None:
            return
        try:
            n = negotiate(sdp, local_host=r.rtp_host, local_port=self.leg.port, session_id=r.rng.getrandbits(31))
        except SdpError:
            r.sip.reject(self.call_id, 488)
            return
        self.leg.session.set_remote(n.remote)
        held = n.direction in ("recvonly", "inactive")
        self.leg.session.hold(held)
        r.sip.answer_reoffer(self.call_id, n.answer)
        peer = self.peer_session()
        if peer is not None and self.bridged:
            if held:
                peer.play(r.prompts.sequence(("hold_tone",)) + HOLD_TONE_SILENCE, "hold")
                self.holding = True
            else:
                peer.stop_playback()
                self.holding = False
            held_hook = getattr(self.call, "leg_held", None)
            if held_hook is not None:
                held_hook(self, held)

    def _no_answer(self) -> None:
        self.ring_timer = None
        if not self.bridged and not self.ended:
            self.hangup("no answer")
            self._gone("no answer", 408)

    def _cancel_ring(self) -> None:
        if self.ring_timer is not None and self.ring_timer.active():
            self.ring_timer.cancel()
        self.ring_timer = None

    def hangup(self, reason: str) -> None:
        if self.ended:
            return
        # Finish first: the UA reports our own BYE back as CallEnded, which must not count
        # as the far end hanging up.
        self._finish()
        if self.call_id is not None:
            self.router.sip.hangup(self.call_id)

    def _gone(self, reason: str, status: int | None) -> None:
        was_bridged = self.bridged
        self._finish()
        self.call.leg_gone(self, reason, status, was_bridged)

    def _finish(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.bridged = False
        self._cancel_ring()
        self.router.agent_legs.pop(self.call_id, None)
        self._close_media()

    def _close_media(self) -> None:
        if self.leg is not None:
            self.leg.close()
            self.leg = None
