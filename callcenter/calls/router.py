"""The router: receives SIP user-agent events, admits and routes new calls, owns the live
calls, and offers them the shared services (prompts, RTP, recordings, the ACD port).

Routing a new INVITE: call admission (`callcenter.admission`) first, then a DID with an IVR
flow or a registered extension, then the SDP; the call itself is a `Call` driven by the
pure controller. The ACD reaches calls only through `deliver` / `describe` /
`place_callback` (the `CallControl` port).
"""

from __future__ import annotations

import logging
import random
import re
from concurrent.futures import Executor
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable

from callcenter.admission import AdmissionPolicy, CallBook
from callcenter.calls.call import Call
from callcenter.calls.callback import CallbackCall
from callcenter.calls.legs import AgentLeg
from callcenter.calls.model import AckTimedOut, FirstRtpTimedOut, RtpTimedOut
from callcenter.calls.ports import CallInfo, CallServices, SipPort
from callcenter.calls.recording import RecordingIO, _Recording
from callcenter.dialplan import DialPlan
from callcenter.media.session import MediaSession
from callcenter.media.wav import WavWriter
from callcenter.prompts import PromptLibrary
from callcenter.sip import events as sip_events
from callcenter.sip.sdp import SdpError, build_offer, negotiate

log = logging.getLogger("callcenter.calls")


class CallRouter(RecordingIO):
    """Receives SIP events, owns the live calls, and offers them the shared services."""

    def __init__(
        self,
        *,
        sip,
        rtp,
        flows_by_did: dict[str, Any],
        prompts: PromptLibrary,
        services: CallServices,
        clock,
        spawn: Callable[[Awaitable[Any]], Any],
        sleep: Callable[[float], Awaitable[None]],
        executor: Executor,
        storage_dir: Path,
        rtp_host: str,
        now_dt: Callable[[], datetime],
        call_variables: Callable[["Call"], dict] | None = None,
        rtp_timeout_s: float = 30.0,
        ring_s: float = 0.0,
        trunks: tuple = (),
        callback_from: str = "12319",
        flows_by_name: dict[str, Any] | None = None,
        outbound_ring_s: float = 40.0,
        live_stt=None,
        publish: Callable[..., None] | None = None,
        rng: random.Random | None = None,
        admission: AdmissionPolicy | None = None,
        dialplan: DialPlan | None = None,
    ):
        self.sip: SipPort = sip
        self.rtp = rtp
        self.flows_by_did = flows_by_did
        self.prompts = prompts
        self.services = services
        self.clock = clock
        self.spawn = spawn
        self.sleep = sleep
        self.executor = executor
        self._flushes: list[tuple[WavWriter, bytes]] = []
        # When each open recording was last forced to disk (fdatasync, every SYNC_EVERY_S).
        self._synced_at: dict[WavWriter, float] = {}
        self.storage_dir = Path(storage_dir)
        self.rtp_host = rtp_host
        self.now_dt = now_dt
        self._call_variables = call_variables
        self.rtp_timeout_s = rtp_timeout_s
        # Ringing time before answering (a CANCEL in this window gets 487).
        self.ring_s = ring_s
        # Outbound calls (callbacks, follow-ups) leave through the first trunk with a host.
        self.trunks = trunks
        self.callback_from = callback_from
        self.flows_by_name = flows_by_name or {}
        self.outbound_ring_s = outbound_ring_s
        # Live transcripts (vosk in worker processes) of the caller, shown on the agent's desk.
        self.live_stt = live_stt
        self.publish = publish or (lambda kind, data, to_user=None: None)
        self.rng = rng or random.SystemRandom()
        self.calls: dict[str, Call] = {}
        self.agent_legs: dict[str, AgentLeg] = {}
        self.acd = None  # the ACD port (AcdDriver), set by the bootstrap when queues are configured
        # Kept-place callbacks in progress, under the original caller's call id (the ACD's key).
        self.callbacks: dict[str, CallbackCall] = {}
        self.rejected = 0
        # Call admission (callcenter.admission): None admits every call to a DID or a
        # registered extension, as before admission existed (unit tests' routers).
        self.admission = admission
        self.dialplan = dialplan or DialPlan()
        self.book = CallBook()  # live inbound calls by source, for the limits
        # Database writes waiting in the single writer (callcenter.write_queue), for admission.
        self.write_backlog: Callable[[], int] = lambda: 0
        # Hears (source, user, reason) when an INVITE's digest answer failed (for bans).
        self.on_digest_failed: Callable[[tuple[str, int], str, str], None] | None = None
        self._refused: dict[int, int] = {}
        self._refused_logged_at = float("-inf")
        # Hears every call with a citizen that ends (callcenter.metrics counts the outcomes).
        self.on_call_ended: Callable[[Call], None] | None = None
        self._watchdog = None

    def call_variables(self, call: Call) -> dict:
        # The flows' `agents_ready` means "someone will answer if I queue": agents at work,
        # busy ones included (a caller waits in line for them); paused agents do not count.
        staffed = self.acd.agents_staffed() if self.acd is not None else 0
        base = {"caller": call.caller or "", "did": call.did, "agents_ready": staffed}
        if self._call_variables is not None:
            base.update(self._call_variables(call))
        return base

    # -- the CallControl port (what the ACD driver may do) ----------------------------------------
    def find(self, call_id: str):
        """The live call or callback by id (behind deliver and describe)."""
        return self.calls.get(call_id) or self.callbacks.get(call_id)

    def deliver(self, call_id: str, event) -> bool:
        """An event for one call (from the ACD); False when there is no such call or it refused."""
        call = self.find(call_id)
        return call is not None and call.deliver(event)

    def describe(self, call_id: str) -> CallInfo | None:
        call = self.find(call_id)
        return call.describe() if call is not None else None

    # -- SIP events -----------------------------------------------------------------------
    def sip_event(self, ev) -> None:
        if isinstance(ev, sip_events.CallOffered):
            self._offered(ev)
            return
        if isinstance(ev, sip_events.ContactsChanged):
            log.info("registrations of %s: %s", ev.aor, ", ".join(ev.contacts) or "none")
            return
        if isinstance(ev, sip_events.CallAcked):
            acked = self.calls.get(ev.call_id)
            if acked is not None:
                acked.acked = True
            return
        if isinstance(ev, sip_events.MessageRejected):
            log.warning("SIP message from %s rejected (%s): %s", ev.source, ev.status, ev.reason)
            return
        call_id = getattr(ev, "call_id", None)
        agent = self.agent_legs.get(call_id)
        if agent is not None:
            agent.sip_event(ev)
            return
        call = self.calls.get(call_id)
        if call is None:
            return
        if isinstance(ev, sip_events.CallAnswered):
            call.outbound_answered(ev.sdp)
        elif isinstance(ev, sip_events.CallFailed):
            call.outbound_failed(ev.status, ev.reason)
        elif isinstance(ev, sip_events.CallEnded):
            call.remote_ended(ev.by, ev.reason)
        elif isinstance(ev, sip_events.CallCancelled):
            call.remote_ended("remote", "cancelled")
        elif isinstance(ev, sip_events.DtmfInfoReceived):
            call.digit(ev.digit)
        elif isinstance(ev, sip_events.ReofferReceived):
            self._reoffer(call, ev)

    def _did_for(self, ev) -> str | None:
        for user in (ev.to_user, _uri_user(ev.request_uri)):
            if user and user in self.flows_by_did:
                return user
        return None

    def live_transcript(self, call_id: str, channel: int, event) -> None:
        """A partial or final result for a live call: to the agent on (or ringing for) it."""
        call = self.calls.get(call_id)
        if call is None:
            return
        agent = call.bridged_agent or (call.agent.acd_agent if call.agent is not None else None)
        final = type(event).__name__ == "FinalTranscript"
        data = {"call_id": call_id, "channel": channel, "text": event.text, "final": final}
        if final:
            call.transcript_lines.append(event.text)
        if agent is not None:
            self.publish("live_transcript", data, to_user=agent)

    def listen_in(self, call_id: str, extension: str) -> bool:
        call = self.calls.get(call_id)
        return call is not None and call.listen_in(extension)

    def outbound_route(self, number: str):
        """(target URI, address, credentials) to call a citizen's number through the first trunk;
        None when there is no trunk or the dial plan refuses the number."""
        from callcenter.sip.ua import Credentials

        checked = self.dialplan.check(number)
        if not checked.allowed:
            log.warning("not calling %r: %s", number, checked.reason)
            return None
        number = checked.number
        for trunk in self.trunks:
            if trunk.host:
                creds = Credentials(trunk.username, trunk.password) if trunk.username else None
                return f"sip:{number}@{trunk.host}:{trunk.port}", (trunk.host, trunk.port), creds
        return None

    def new_session(self, **kwargs) -> MediaSession:
        """A media session with fresh random SSRC, sequence and timestamp (RFC 3550 §5.1)."""
        return MediaSession(
            ssrc=self.rng.getrandbits(32),
            initial_sequence=self.rng.getrandbits(16),
            initial_timestamp=self.rng.getrandbits(32),
            **kwargs,
        )

    def dial_out(self, contact: str, remote: tuple[str, int], *, from_user: str, credentials,
                 listener, record_sent: bool):
        """Open an RTP leg, offer it, and send the INVITE: (leg, call id), or None.

        The leg sends nothing until the answer says where (`hold`); whoever receives
        CallAnswered sets the codec and remote and takes it off hold.
        """
        session = self.new_session(codec="PCMA", payload_type=8, dtmf_payload_type=101, remote=None,
                                   record_sent=record_sent)
        session.hold(True)
        try:
            leg = self.rtp.open(session, listener)
        except Exception as exc:
            log.error("cannot call %s: no RTP port (%s)", contact, exc)
            return None
        offer = build_offer(local_host=self.rtp_host, local_port=leg.port, session_id=self.rng.getrandbits(31))
        call_id = self.sip.invite(target_uri=contact, remote=remote, from_user=from_user, sdp=offer,
                                  credentials=credentials)
        if not call_id:
            leg.close()
            return None
        return leg, call_id

    def place_ivr_call(
        self,
        *,
        number: str,
        flow_name: str,
        variables: dict,
        on_outcome: Callable[[str], None],
        on_survey: Callable[[str], None] | None = None,
        ring_timeout_s: float | None = None,
    ) -> "Call | None":
        """Call a citizen through the trunk and run an IVR flow (the satisfaction survey) when
        they answer. `on_outcome` hears once: answered, busy, no_answer or failed."""
        route = self.outbound_route(number)
        flow = self.flows_by_name.get(flow_name)
        if route is None or flow is None:
            log.warning("cannot call %s: %s", number, "no trunk with a host" if route is None else f"no flow {flow_name}")
            return None
        placed = self.dial_out(route[0], route[1], from_user=self.callback_from, credentials=route[2],
                               listener=None, record_sent=True)
        if placed is None:
            return None
        leg, call_id = placed
        call = Call(self, call_id, number, f"outbound:{flow_name}", flow, kind="outbound")
        call.leg = leg
        leg.listener = call.media_events
        call.variables = dict(variables)
        call.on_outcome, call.on_survey = on_outcome, on_survey
        call.start(ring_s=ring_timeout_s or self.outbound_ring_s)
        self.calls[call_id] = call
        self.spawn(self.services.call_started(
            call_id=call_id, direction="outbound", did=call.did, caller=number, now=self.now_dt()))
        self._ensure_watchdog()
        return call

    def place_agent_callback(self, callback_id: str, number: str, agent_id: str | None,
                             on_outcome: Callable[[str], None]) -> bool:
        """An agent's scheduled callback: their phone rings first (preview), then the citizen's."""
        if not self._may_dial(number):
            return False
        extension = None
        if agent_id and self.acd is not None:
            extension = self.acd.agent_extension(agent_id)
        elif agent_id is None and self.acd is not None:
            # No agent of its own (a kept place that expired before any try): the agent who
            # has been ready longest takes it, as the queue would have.
            chosen = self.acd.longest_ready(lambda ext: bool(self.bindings_for(ext)))
            if chosen is not None:
                agent_id, extension = chosen
        if extension is None:
            log.warning("callback %s: agent %s has no extension", callback_id, agent_id)
            return False
        cb = CallbackCall(self, callback_id, number, agent_id, None, on_outcome=on_outcome)
        return cb.start(extension, 30.0)

    def place_callback(self, call_id: str, number: str, agent_id: str, extension: str, queue: str,
                       ring_timeout_s: float) -> bool:
        if not self._may_dial(number):
            return False
        cb = CallbackCall(self, call_id, number, agent_id, queue)
        return cb.start(extension, ring_timeout_s)

    def _may_dial(self, number: str) -> bool:
        """The [dialplan] allows calling `number` back (checked before an agent's phone rings)."""
        checked = self.dialplan.check(number)
        if not checked.allowed:
            log.warning("callback to %r not placed: %s", number, checked.reason)
        return checked.allowed

    def bindings_for(self, extension: str) -> list:
        registrar = getattr(self.sip, "registrar", None)
        if registrar is None:
            return []
        return registrar.bindings_for_user(extension, self.clock.seconds())

    def _admit(self, ev) -> bool:
        """Call admission's verdict on a new INVITE: False when it was refused (already answered)."""
        if self.admission is None:
            return True
        now = self.clock.seconds()
        verdict, _, headers, auth = self.admission.assess(
            source=ev.source, numbers=(ev.to_user, _uri_user(ev.request_uri)),
            is_extension=lambda n: n not in self.flows_by_did and bool(self.bindings_for(n)),
            proxy_authorization=getattr(ev, "proxy_authorization", None),
            calls_total=len(self.book), calls_from_source=self.book.from_ip(ev.source[0]),
            backlog=self.write_backlog(), now=now)
        if auth.kind in ("bad", "forged") and self.on_digest_failed is not None:
            self.on_digest_failed(ev.source, ev.from_user or "", f"INVITE digest {auth.kind}")
        if verdict.action == "admit":
            return True
        self.rejected += 1
        self.sip.reject(ev.call_id, verdict.status, headers=headers)
        if verdict.status != 407:
            # Refusals come in floods: one summary line every 10 s, not one per INVITE.
            self._refused[verdict.status] = self._refused.get(verdict.status, 0) + 1
            if now - self._refused_logged_at >= 10.0:
                counts = ", ".join(f"{n} × {s}" for s, n in sorted(self._refused.items()))
                log.warning("calls refused: %s (latest from %s:%s: %s)", counts, *ev.source[:2], verdict.why)
                self._refused.clear()
                self._refused_logged_at = now
        return False

    def _offered(self, ev) -> None:
        if not self._admit(ev):
            return
        did = self._did_for(ev)
        extension = None
        if did is None and ev.to_user and self.bindings_for(ev.to_user):
            extension = ev.to_user
        if did is None and extension is None:
            self.rejected += 1
            self.sip.reject(ev.call_id, 404)
            return
        try:
            probe = negotiate(ev.sdp, local_host=self.rtp_host, local_port=9, session_id=1)
        except SdpError as exc:
            log.info("call %s: no usable SDP (%s): 488", ev.call_id, exc)
            self.rejected += 1
            self.sip.reject(ev.call_id, 488)
            return
        call = Call(self, ev.call_id, ev.from_user, did or extension, self.flows_by_did.get(did),
                    kind="inbound" if extension is None else "extension")
        session = self.new_session(
            codec=probe.codec,
            payload_type=probe.payload_type,
            dtmf_payload_type=probe.dtmf_payload_type,
            remote=probe.remote,
            inband_dtmf=probe.dtmf_payload_type is None,
            record_sent=True,
        )
        try:
            call.leg = self.rtp.open(session, call.media_events)
        except Exception as exc:
            log.error("call %s: cannot open RTP (%s): 503", ev.call_id, exc)
            self.sip.reject(ev.call_id, 503)
            return
        answer = negotiate(
            ev.sdp,
            local_host=self.rtp_host,
            local_port=call.leg.port,
            session_id=self.rng.getrandbits(31),
        )
        self.calls[call.call_id] = call
        call.inbound = True
        call.pending_answer = answer.answer
        self.book.add(call.call_id, ev.source[0])
        self.spawn(
            self.services.call_started(
                call_id=call.call_id, direction="inbound", did=did or extension, caller=call.caller, now=self.now_dt()
            )
        )
        # A direct call to an agent's extension is answered only when the agent answers.
        call.start(ring_s=self.ring_s, extension=extension)
        self._ensure_watchdog()

    def _reoffer(self, call: Call, ev) -> None:
        try:
            n = negotiate(ev.sdp, local_host=self.rtp_host, local_port=call.leg.port, session_id=1)
        except SdpError:
            # While a re-INVITE is pending, reject answers only it; the call stays up.
            self.sip.reject(call.call_id, 488)
            return
        call.leg.session.set_remote(n.remote)
        call.leg.session.hold(n.direction in ("recvonly", "inactive"))
        self.sip.answer_reoffer(call.call_id, n.answer)

    # -- watchdog: RTP timeout and end-on-silence -----------------------------------------
    # It only measures and reports events (AckTimedOut, FirstRtpTimedOut, RtpTimedOut,
    # MessageSilenceElapsed); what follows is the call table's rows.
    def _ensure_watchdog(self) -> None:
        if self._watchdog is None:
            self._watch_due = self.clock.seconds() + 0.25
            self._watchdog = self.clock.callLater(0.25, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        now = self.clock.seconds()
        policy = self.admission
        # A watchdog a second late means the loop itself stalled (overload): ACKs and RTP may be
        # waiting unread in the sockets, so no caller is blamed for them this round.
        stalled = now - getattr(self, "_watch_due", now) > 1.0
        for call in list(self.calls.values()):
            call.check_silence(now)
            last = getattr(call.leg.session, "last_received_at", None) if call.leg else None
            if policy is not None and call.answered_at is not None and not call.ended and not stalled:
                # A caller that never ACKs our 200 OK, or never sends a packet of audio, holds
                # a port for nothing (the slow-INVITE attack): end it within seconds.
                since = now - call.answered_at
                if call.inbound and not call.acked and since > policy.ack_timeout_s:
                    log.info("call %s: no ACK after %.0f s, hanging up", call.call_id, since)
                    call.handle(AckTimedOut(since))
                    continue
                if last is None and since > policy.first_rtp_timeout_s:
                    log.info("call %s: no RTP from the caller after %.0f s, hanging up", call.call_id, since)
                    call.handle(FirstRtpTimedOut(since))
                    continue
            started = call.answered_at or now
            if now - (last if last is not None else started) > self.rtp_timeout_s:
                log.warning("call %s: no RTP for %.0f s, hanging up", call.call_id, self.rtp_timeout_s)
                call.handle(RtpTimedOut(self.rtp_timeout_s))
        if self.calls:
            self._ensure_watchdog()

    def stop(self) -> None:
        for call in [*self.calls.values(), *self.callbacks.values()]:
            call.hangup("shutdown")
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None


def _uri_user(uri: str) -> str | None:
    m = re.match(r"^\s*<?sips?:([^@;>]+)@", uri or "")
    return m.group(1) if m else None


__all__ = ["CallRouter", "_Recording"]
