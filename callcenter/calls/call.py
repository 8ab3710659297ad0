"""The driver of one call with a citizen: it performs the controller's actions and alone
touches the clock, the legs, the media session, the recordings and the IVR's tasks.

Every control event goes through the pure controller (`controller.step` over `table.py`);
this class turns SIP, media, leg and ACD happenings into those events and the returned
actions into port calls. Audio itself (mixing, bridging, recording, end-on-silence) stays
here on the media tick: it is data flow, not control.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from callcenter import acd
from callcenter.calls import controller
from callcenter.calls import model as m
from callcenter.calls.legs import HOLD_TONE_SILENCE, AgentLeg, use_answer
from callcenter.calls.ports import CallInfo
from callcenter.calls.recording import FLUSH_EVERY_FRAMES, SPEECH_RMS, _Recording, _safe_name
from callcenter.media import events as media
from callcenter.media.recorder import StereoMixer
from callcenter.prompts import MissingPrompt
from callcenter.sip.sdp import SdpError, read_answer
from ivr_flows import engine as ivr

log = logging.getLogger("callcenter.calls")

# The call's own timers, and the event each one fires.
_TIMER_EVENTS = {"answer": m.RingElapsed, "no_answer": m.RingTimedOut}


class Call:
    """One call with a citizen: inbound (they called a DID or an extension) or outbound (a
    follow-up survey)."""

    def __init__(self, router, call_id: str, caller: str | None, did: str, flow, *, kind: str = "inbound"):
        self.router = router
        self.call_id = call_id
        self.caller = caller
        self.did = did
        self.flow = flow
        self.leg = None
        self.state = controller.new_call(call_id, kind, caller=caller, has_flow=flow is not None,
                                         acd_present=getattr(router, "acd", None) is not None)
        # Outbound calls: extra IVR variables, and who hears how the attempt and survey went.
        self.variables: dict = {}
        self.on_outcome: Callable[[str], None] | None = None
        self.on_survey: Callable[[str], None] | None = None
        self.ivr_state = None
        self.timers: dict[str, Any] = {}  # the IVR's timers, by its ids
        self.call_timers: dict[str, Any] = {}  # ring delay, outbound no-answer
        self.call_rec: _Recording | None = None
        self.msg_rec: _Recording | None = None
        self.ivr_recording_ids: dict[str, int] = {}
        self.answered_at: float | None = None
        self.mixer = StereoMixer()
        self.agent: AgentLeg | None = None
        # Supervisors listening in (监听): legs that hear both sides and are never heard.
        self.monitors: list[AgentLeg] = []
        # Attended transfer (咨询转接): the agent's call to the transfer target, while the
        # caller waits on hold.
        self.consult: AgentLeg | None = None
        self.live = None  # live transcript stream of the caller's audio
        self.transcript_lines: list[str] = []
        # SDP answer kept until we answer (after the ring delay, or when the extension answers).
        self.pending_answer: bytes | None = None
        # Inbound calls: our 200 OK must be ACKed within [admission] ack_timeout_s.
        self.inbound = False
        self.acked = False

    # -- what others read (all from the controller's state) --------------------------------------
    @property
    def ended(self) -> bool:
        return self.state.phase == "ended"

    @property
    def queue(self) -> str | None:
        return self.state.queue

    @property
    def bridged_agent(self) -> str | None:
        return self.state.bridged_agent

    @property
    def consult_agent(self) -> str | None:
        return self.state.consult_agent

    @property
    def callback_requested(self) -> bool:
        return self.state.callback_requested

    @property
    def ivr_path(self) -> list[str]:
        return list(self.state.path)

    def describe(self) -> CallInfo:
        s = self.state
        return CallInfo(self.call_id, self.caller, self.did, s.path, tuple(self.transcript_lines),
                        agent=s.bridged_agent, consult_agent=s.consult_agent, desk_held=s.desk_held, muted=s.muted)

    # -- the controller ------------------------------------------------------------------------
    def handle(self, event: m.CallEvent) -> bool:
        """Step the controller and perform its actions; False when the event was refused here
        or an action that answers for it failed (a leg that could not be dialled)."""
        try:
            self.state, actions = controller.step(self.state, event, self.router.clock.seconds())
        except m.IllegalCallEvent as exc:
            log.debug("call %s: %s ignored", self.call_id, exc)
            return False
        ok = True
        for action in actions:
            try:
                if self._perform[type(action)](self, action) is False:
                    ok = False
            except MissingPrompt as exc:
                log.error("call %s: %s", self.call_id, exc)
            except Exception:
                log.exception("call %s: action %r failed", self.call_id, action)
        return ok

    deliver = handle  # the ACD's events arrive here (CallControl.deliver)

    # -- media events ----------------------------------------------------------------------------
    def media_events(self, events) -> None:
        for ev in events:
            if isinstance(ev, media.AudioSent):
                self._sent(ev.pcm)
            elif isinstance(ev, media.AudioReceived):
                self._audio(ev.pcm)
            elif isinstance(ev, media.DtmfReceived):
                self.digit(ev.digit)
            elif isinstance(ev, media.PlaybackFinished):
                self.handle(m.PlaybackEnded(ev.play_id))

    def _sent(self, pcm: bytes) -> None:
        """Once per tick: what the caller heard (prompts, then the agent) is the right channel."""
        rec = self.call_rec
        if rec is None:
            return
        self.mixer.add_agent(pcm)
        # Paired now, interleaved once per flush (StereoMixer.take): cheaper than per frame.
        caller, heard = self.mixer.advance()
        rec.frames += 1
        if self.monitors:
            # Listen-in: both sides, mixed to mono, to each supervisor's phone.
            both = np.frombuffer(caller, dtype="<i2").astype(np.int32) + np.frombuffer(heard, dtype="<i2")
            mono = np.clip(both, -32768, 32767).astype("<i2").tobytes()
            for monitor in self.monitors:
                if monitor.bridged and monitor.leg is not None:
                    monitor.leg.session.feed_bridge(mono)
        if rec.frames % FLUSH_EVERY_FRAMES == 0:
            rec.pending += self.mixer.take()
            self.router.flush(rec)

    def _audio(self, pcm: bytes) -> None:
        now = self.router.clock.seconds()
        if self.call_rec is not None:
            self.mixer.add_caller(pcm)
        if self.live is not None:
            self.live.feed(pcm)
        agent = self.agent
        if agent is not None and agent.bridged and agent.leg is not None and self.consult is None \
                and not agent.desk_held:
            agent.leg.session.feed_bridge(pcm)
        rec = self.msg_rec
        if rec is not None:
            rec.pending += pcm
            rec.frames += 1
            if rec.frames % FLUSH_EVERY_FRAMES == 0:
                self.router.flush(rec)
        msg = self.msg_rec
        if msg is not None and msg.silence_s:
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
            if samples.size and float(np.sqrt(np.mean(samples * samples))) >= SPEECH_RMS:
                msg.last_voice_at = now

    def digit(self, digit: str) -> None:
        self.handle(m.DigitReceived(digit))

    # -- SIP events (from the router) ---------------------------------------------------------------
    def start(self, ring_s: float = 0.0, extension: str | None = None) -> None:
        self.handle(m.CallStarted(ring_s=ring_s, extension=extension))

    def outbound_answered(self, sdp: bytes) -> None:
        try:
            n = read_answer(sdp)
        except SdpError as exc:
            log.warning("outbound call %s: unusable SDP answer (%s)", self.call_id, exc)
            self.handle(m.FarEndAnswered(sdp_ok=False))
            return
        use_answer(self.leg.session, n)
        self.handle(m.FarEndAnswered(sdp_ok=True))

    def outbound_failed(self, status: int | None, reason: str) -> None:
        self.handle(m.DialFailed(status, reason))

    def remote_ended(self, by: str, reason: str) -> None:
        self.handle(m.RemoteEnded(by, reason))

    def hangup(self, reason: str) -> None:
        self.handle(m.HangupRequested(reason))

    # -- legs report here -----------------------------------------------------------------------------
    def leg_answered(self, leg: AgentLeg) -> None:
        if leg.monitor:
            return
        if leg is self.consult:
            self.handle(m.ConsultLegAnswered())
            return
        if self.ended:
            leg.hangup("caller left")
            return
        self.handle(m.AgentLegAnswered(leg.acd_agent))
        log.info("call %s: leg to %s answered", self.call_id, leg.extension)

    def leg_gone(self, leg: AgentLeg, reason: str, status: int | None, was_bridged: bool) -> None:
        if leg is self.consult:
            self.handle(m.ConsultLegGone())
            return
        if leg.monitor:
            if leg in self.monitors:
                self.monitors.remove(leg)
            return
        if self.agent is leg:
            self.agent = None
        self.handle(m.AgentLegGone(leg.acd_agent, reason, status, was_bridged))

    def leg_held(self, leg: AgentLeg, held: bool) -> None:
        if leg is self.agent:
            self.handle(m.AgentPhoneHeld(held))

    # -- from the agent's desk: its events (DeskHoldRequested, ConsultRequested …) arrive through
    # CallControl.deliver; listen-in through the router.
    def listen_in(self, extension: str) -> bool:
        """Ring a supervisor's phone; once answered it hears the call and is not heard."""
        return self.handle(m.ListenInRequested(extension))

    # -- the IVR leg ------------------------------------------------------------------------------------
    def start_ivr(self) -> None:
        now = self.router.now_dt()
        variables = {**self.router.call_variables(self), **self.variables}
        self.ivr_state, actions = ivr.start(self.flow, now=now, variables=variables)
        self.run(actions)

    def ivr_event(self, event) -> None:
        if self.ivr_state is None:
            return
        try:
            self.ivr_state, actions = ivr.step(self.ivr_state, event, self.router.now_dt())
        except Exception:
            log.exception("IVR step failed on %r in call %s; hanging up", event, self.call_id)
            actions = [] if self.ended else [ivr.Hangup("ivr error")]
        self.run(actions)

    def run(self, actions) -> None:
        for action in actions:
            perform = self._ivr_perform.get(type(action))
            try:
                if perform is None:
                    log.info("call %s: action %s not supported yet", self.call_id, type(action).__name__)
                else:
                    perform(self, action)
            except MissingPrompt as exc:
                log.error("call %s: %s", self.call_id, exc)
            except Exception:
                log.exception("call %s: action %r failed", self.call_id, action)

    def _ivr_play(self, a: ivr.Play) -> None:
        if not self.ended and self.leg is not None:
            self.leg.session.play(self.router.prompts.sequence(a.prompts), a.play_id)

    def _ivr_stop_playback(self, a) -> None:
        if self.leg is not None:
            self.leg.session.stop_playback()

    def _ivr_set_timer(self, a: ivr.SetTimer) -> None:
        old = self.timers.pop(a.timer_id, None)
        if old is not None and old.active():
            old.cancel()
        delay = max(0.0, (a.at - self.router.now_dt()).total_seconds())
        timer_id = a.timer_id

        def fire() -> None:
            self.timers.pop(timer_id, None)
            self.ivr_event(ivr.TimerFired(timer_id))

        self.timers[timer_id] = self.router.clock.callLater(delay, fire)

    def _ivr_cancel_timer(self, a: ivr.CancelTimer) -> None:
        t = self.timers.pop(a.timer_id, None)
        if t is not None and t.active():
            t.cancel()

    def _ivr_file_report(self, a: ivr.FileReport) -> None:
        ids = tuple(i for i in (self.ivr_recording_ids.get(a.recording_id or ""),) if i)
        self.router.spawn(self._file_report(a.channel, ids, dict(a.variables)))

    async def _file_report(self, channel: str, recording_ids: tuple[int, ...], variables: dict) -> None:
        number = await self.router.services.file_report(
            channel=channel, reporter_phone=self.caller, call_id=self.call_id, recording_ids=recording_ids,
            variables=variables, now=self.router.now_dt(),
        )
        log.info("call %s: report filed as case %s", self.call_id, number)
        self.ivr_event(ivr.ReportFiled(number))

    async def _lookup(self, number: str) -> None:
        found, status = await self.router.services.lookup_case(number)
        self.ivr_event(ivr.CaseLookedUp(found=found, case_number=number, status=status))

    _ivr_perform: dict[type, Callable[["Call", Any], None]] = {
        ivr.Play: _ivr_play,
        ivr.StopPlayback: _ivr_stop_playback,
        ivr.StartRecording: lambda self, a: self.start_message(a),
        ivr.StopRecording: lambda self, a: self.stop_message("digit"),
        ivr.SetTimer: _ivr_set_timer,
        ivr.CancelTimer: _ivr_cancel_timer,
        ivr.FileReport: _ivr_file_report,
        ivr.LookupCase: lambda self, a: self.router.spawn(self._lookup(a.case_number)),
        ivr.Enqueue: lambda self, a: self.handle(m.QueueRequested(a.queue, a.skill)),
        ivr.RecordSurvey: lambda self, a: self.handle(m.SurveyAnswered(a.answer)),
        ivr.Hangup: lambda self, a: self.handle(m.HangupRequested(a.reason)),
        ivr.Log: lambda self, a: log.info("call %s: %s", self.call_id, a.message),
    }

    # -- voice messages -----------------------------------------------------------------------------------
    def start_message(self, a) -> None:
        if self.ended or self.msg_rec is not None:
            return
        r = self.router
        if a.beep and self.leg is not None:
            self.leg.session.play(r.prompts.pcm("beep"), f"beep:{a.recording_id}")
        rec = r.start_recording(call_id=self.call_id, kind="message", name=f"msg-{_safe_name(a.recording_id)}",
                                channels=1, ivr_id=a.recording_id, stop_digits=a.stop_digits or "",
                                silence_s=a.silence_s, last_voice_at=r.clock.seconds())
        self.msg_rec = rec
        rec.on_registered.append(self._message_registered)
        rec.max_timer = r.clock.callLater(a.max_s, self._max_reached, rec)
        self.handle(m.MessageStarted(rec.stop_digits))

    def _message_registered(self, rec: _Recording) -> None:
        if rec.ivr_id is not None and rec.recording_id is not None:
            self.ivr_recording_ids[rec.ivr_id] = rec.recording_id

    def _max_reached(self, rec: _Recording) -> None:
        rec.max_timer = None
        if self.msg_rec is rec:
            self.stop_message("max_length")

    def check_silence(self, now: float) -> None:
        rec = self.msg_rec
        if rec is not None and rec.silence_s and now - rec.last_voice_at >= rec.silence_s:
            self.handle(m.MessageSilenceElapsed())

    def stop_message(self, reason: str) -> None:
        rec = self.msg_rec
        if rec is None:
            return
        self.msg_rec = None
        if rec.max_timer is not None and rec.max_timer.active():
            rec.max_timer.cancel()
        self.handle(m.MessageStopped(reason))
        self.router.finish_recording(rec, lambda rec: self._message_stored(rec, reason))

    def _message_stored(self, rec: _Recording, reason: str) -> None:
        """Closed and registered: the IVR hears the message is stored (and then the hang-up)."""
        self.ivr_event(ivr.RecordingStopped(recording_id=rec.ivr_id or "", reason=reason,
                                            duration_s=rec.duration or 0.0))
        if self.ended:
            self.ivr_event(ivr.CallerHungUp())

    # -- performing the controller's actions -------------------------------------------------------------
    def _play(self, a: m.Play) -> None:
        if self.leg is not None:
            self.leg.session.play(self.router.prompts.sequence(a.prompts), a.play_id)

    def _play_hold_tone(self, a) -> None:
        if self.leg is not None:
            self.leg.session.play(self.router.prompts.sequence(("hold_tone",)) + HOLD_TONE_SILENCE, "hold")

    def _stop_playback(self, a) -> None:
        if self.leg is not None:
            self.leg.session.stop_playback()

    def _hold_media(self, a: m.HoldMedia) -> None:
        if self.leg is not None:
            self.leg.session.hold(a.held)

    def _close_media(self, a) -> None:
        if self.leg is not None:
            self.leg.close()

    def _answer(self, a) -> bool:
        sdp, self.pending_answer = self.pending_answer, None
        if self.router.sip.answer(self.call_id, sdp) is False:
            return self.handle(m.AnswerRefused())
        return self.handle(m.Answered())

    def _dial_agent(self, a: m.DialAgent) -> bool:
        bindings = self.router.bindings_for(a.extension)
        ok = False
        if bindings:
            leg = AgentLeg(self.router, self, a.extension, acd_agent=a.acd_agent)
            ok = leg.dial(bindings[0].contact, bindings[0].source, a.timeout_s)
            if ok:
                self.agent = leg
        self.handle(m.AgentDialled(ok, a.path_step))
        return ok

    def _dial_number(self, a: m.DialNumber) -> bool:
        route = self.router.outbound_route(a.number)
        ok = False
        if route is not None:
            leg = AgentLeg(self.router, self, a.number)
            ok = leg.dial(route[0], route[1], 40.0, from_user=self.caller, credentials=route[2])
            if ok:
                self.agent = leg
        if not ok:
            log.warning("transfer of %s to %s failed: no route", self.call_id, a.number)
        self.handle(m.AgentDialled(ok, a.path_step))
        return ok

    def _dial_consult(self, a: m.DialConsult) -> bool:
        r = self.router
        ok, consult = False, None
        if a.number:
            route = r.outbound_route(a.target)
        else:
            bindings = r.bindings_for(a.target)
            route = (bindings[0].contact, bindings[0].source, None) if bindings else None
        if route is not None and self.agent is not None:
            consult = AgentLeg(r, self, a.target, peer=self.agent)
            ok = consult.dial(route[0], route[1], 30.0, from_user=self.caller, credentials=route[2])
        if ok:
            self.consult = consult
            self.agent.peer = consult  # the agent now hears the target
        self.handle(m.ConsultDialled(ok, a.target))
        return ok

    def _dial_monitor(self, a: m.DialMonitor) -> bool:
        bindings = self.router.bindings_for(a.extension)
        if not bindings:
            return False
        monitor = AgentLeg(self.router, self, a.extension, monitor=True)
        if not monitor.dial(bindings[0].contact, bindings[0].source, 30.0, from_user=self.caller):
            return False
        self.monitors.append(monitor)
        return True

    def _hangup_agent_leg(self, a: m.HangupAgentLeg) -> None:
        agent = self.agent
        if agent is None or (a.acd_agent is not None and agent.acd_agent != a.acd_agent):
            return
        self.agent = None
        agent.hangup(a.reason)

    def _hangup_consult_leg(self, a: m.HangupConsultLeg) -> None:
        consult, self.consult = self.consult, None
        if consult is not None:
            consult.hangup(a.reason)
        if self.agent is not None:
            self.agent.peer = None

    def _hangup_monitors(self, a: m.HangupMonitors) -> None:
        for monitor in list(self.monitors):
            monitor.hangup(a.reason)
        self.monitors.clear()

    def _hand_over(self, a: m.HandOverToConsult) -> None:
        consult, agent = self.consult, self.agent
        self.consult = None
        consult.peer = None  # the target now hears the caller
        self.agent = consult
        if agent is not None:
            agent.hangup(a.reason)

    def _mute_agent(self, a: m.MuteAgent) -> None:
        if self.agent is not None:
            self.agent.muted = a.muted

    def _hold_agent(self, a: m.HoldAgent) -> None:
        if self.agent is not None:
            self.agent.desk_held = a.held

    def _tell_acd(self, a: m.TellAcd) -> None:
        port = self.router.acd
        if port is None:
            return
        if a.later:
            self.router.clock.callLater(0, port.handle, a.event)
        else:
            port.handle(a.event)

    def _join_queue(self, a: m.JoinQueue) -> None:
        port = self.router.acd
        if port is None or not port.handle(acd.CallerJoined(a.queue, self.call_id, self.caller or "", a.priority,
                                                            a.skill)):
            self.handle(m.QueueJoinRefused())

    def _keep_place(self, a: m.KeepPlace) -> None:
        """The caller keeps their place and hangs up; the ACD calls them back when it is their turn."""
        port = self.router.acd
        if a.number and port is not None and port.handle(acd.CallbackRequested(self.call_id, a.number)):
            self.handle(m.CallbackKept())

    def _release_consulted(self, a: m.ReleaseConsulted) -> None:
        """The colleague consulted was paused ("consult") so the queue would not offer them a
        call; once this call is over they are ready again (unless they changed it themselves)."""
        if self.router.acd is not None:
            self.router.acd.release_consulted(a.agent)

    def _to_ivr(self, a: m.ToIvr) -> None:
        if a.later:
            self.router.clock.callLater(0, self.ivr_event, a.event)
        else:
            self.ivr_event(a.event)

    def _mark_answered(self, a) -> None:
        r = self.router
        self.answered_at = r.clock.seconds()
        # Stereo from the answer on: caller left, what the caller heard (IVR, then agent) right.
        self.call_rec = r.start_recording(call_id=self.call_id, kind="call", name="call", channels=2)
        r.spawn(r.services.call_answered(self.call_id, r.now_dt()))
        if r.live_stt is not None:
            try:
                self.live = r.live_stt.open(self.call_id, 0)
            except Exception:
                log.exception("call %s: no live transcript", self.call_id)

    def _finish_call_recording(self, a) -> None:
        if self.call_rec is not None:
            self.call_rec.pending += self.mixer.drain()
            self.router.finish_recording(self.call_rec)

    def _report_outcome(self, a: m.ReportOutcome) -> None:
        callback, self.on_outcome = self.on_outcome, None
        if callback is not None:
            callback(a.outcome)

    def _report_survey(self, a: m.ReportSurvey) -> None:
        if self.on_survey is not None:
            self.on_survey(a.answer)

    def _start_timer(self, a: m.StartTimer) -> None:
        event = _TIMER_EVENTS[a.name]

        def fire() -> None:
            self.call_timers.pop(a.name, None)
            self.handle(event())

        self.call_timers[a.name] = self.router.clock.callLater(a.delay_s, fire)

    def _cancel_timers(self, a) -> None:
        for t in [*self.timers.values(), *self.call_timers.values()]:
            if t is not None and t.active():
                t.cancel()
        self.timers.clear()
        self.call_timers.clear()

    def _forget(self, a) -> None:
        r = self.router
        r.calls.pop(self.call_id, None)
        r.book.remove(self.call_id)
        if r.on_call_ended is not None:
            try:
                r.on_call_ended(self)
            except Exception:
                log.exception("call-ended hook failed on %s", self.call_id)

    def _close_live(self, a) -> None:
        if self.live is not None:
            self.live.close()
            self.live = None

    def _notify_ended(self, a: m.NotifyEnded) -> None:
        r = self.router
        r.spawn(r.services.call_ended(self.call_id, r.now_dt(), a.reason, a.path))

    _perform: dict[type, Callable[["Call", Any], Any]] = {
        m.SendRinging: lambda self, a: self.router.sip.ringing(self.call_id),
        m.Answer: _answer,
        m.Reject: lambda self, a: self.router.sip.reject(self.call_id, a.status),
        m.Hangup: lambda self, a: self.router.sip.hangup(self.call_id),
        m.Play: _play,
        m.PlayHoldTone: _play_hold_tone,
        m.StopPlayback: _stop_playback,
        m.HoldMedia: _hold_media,
        m.CloseMedia: _close_media,
        m.DialAgent: _dial_agent,
        m.DialNumber: _dial_number,
        m.DialConsult: _dial_consult,
        m.DialMonitor: _dial_monitor,
        m.HangupAgentLeg: _hangup_agent_leg,
        m.HangupConsultLeg: _hangup_consult_leg,
        m.HangupMonitors: _hangup_monitors,
        m.HandOverToConsult: _hand_over,
        m.MuteAgent: _mute_agent,
        m.HoldAgent: _hold_agent,
        m.TellAcd: _tell_acd,
        m.JoinQueue: _join_queue,
        m.KeepPlace: _keep_place,
        m.ReleaseConsulted: _release_consulted,
        m.StartIvr: lambda self, a: self.start_ivr(),
        m.ToIvr: _to_ivr,
        m.MarkAnswered: _mark_answered,
        m.FinishCallRecording: _finish_call_recording,
        m.StopMessage: lambda self, a: self.stop_message(a.reason),
        m.ReportOutcome: _report_outcome,
        m.ReportSurvey: _report_survey,
        m.StartTimer: _start_timer,
        m.CancelTimers: _cancel_timers,
        m.Forget: _forget,
        m.CloseLiveTranscript: _close_live,
        m.NotifyEnded: _notify_ended,
    }
